"""Layering rules: the model (mrcnn) never imports download/ or dataset/ (they are installed
as mrcnn_keras3.*); download/ and dataset/ import each other only through the package-relative
helper or mrcnn's TF-free leaves; nothing imports the command-line entry points."""
import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _imports(folder):
    """Every import in ``folder`` and its sub-packages: (path, [module names], relative level)."""
    for base, _, names in sorted(os.walk(os.path.join(REPO, folder))):
        for name in sorted(n for n in names if n.endswith(".py")):
            path = os.path.join(base, name)
            tree = ast.parse(open(path, encoding="utf8").read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    yield path, [a.name for a in node.names], 0
                elif isinstance(node, ast.ImportFrom):
                    yield path, [node.module or ""], node.level


def test_model_never_imports_the_apps():
    for path, names, level in _imports("mrcnn"):
        for n in names:
            assert level or n.split(".")[0] not in ("download", "dataset", "mrcnn_keras3", "train", "evaluate"), (path, n)


def test_download_and_dataset_use_relative_imports():
    for folder in ("download", "download/mirror", "dataset"):
        for path, names, level in _imports(folder):
            for n in names:
                assert level or n.split(".")[0] not in ("download", "dataset"), (path, n)


def test_no_cli_imports_another_cli():
    for path, names, level in _imports("mrcnn_keras3"):
        for n in names:
            assert not n.endswith("_cli") or os.path.basename(path) == "__init__.py", (path, n)
            assert n.split(".")[0] not in ("train", "evaluate"), (path, n)


def _module_graph(package="mrcnn"):
    """{module: {mrcnn modules it imports, at the top or inside functions}}."""
    graph = {}
    for base, _, names in os.walk(os.path.join(REPO, package)):
        for name in (n for n in names if n.endswith(".py")):
            rel = os.path.relpath(os.path.join(base, name), REPO)[:-3]
            mod = rel.replace(os.sep, ".").replace(".__init__", "")
            deps = set()
            for node in ast.walk(ast.parse(open(os.path.join(REPO, rel + ".py"), encoding="utf8").read())):
                if isinstance(node, ast.ImportFrom):
                    target = node.module or ""
                    if node.level:
                        target = ".".join(mod.split(".")[:-node.level] + ([target] if target else []))
                    deps |= {target} | {target + "." + a.name for a in node.names}
                elif isinstance(node, ast.Import):
                    deps |= {a.name for a in node.names}
            graph[mod] = deps
    return {m: {d for d in deps if d in graph and d != m and not m.startswith(d + ".")}
            for m, deps in graph.items()}


def test_no_import_loops_in_the_model_package():
    graph, state, loops = _module_graph(), {}, []

    def visit(mod, path):
        state[mod] = "open"
        for dep in sorted(graph[mod]):
            if state.get(dep) == "open":
                loops.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[mod] = "done"

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    assert len(graph) > 50 and "mrcnn.structures.boxes" in graph["mrcnn.utils"]
    assert loops == [], loops


PACKAGES = ("mrcnn", "mrcnn_keras3", "download", "dataset")


def _sources(folders=PACKAGES, extra=("train.py", "evaluate.py")):
    paths = [os.path.join(REPO, p) for p in extra]
    for folder in folders:
        for base, _, names in os.walk(os.path.join(REPO, folder)):
            paths += [os.path.join(base, n) for n in sorted(names) if n.endswith(".py")]
    return {os.path.relpath(p, REPO): open(p, encoding="utf8").read() for p in sorted(paths)}


def test_files_and_functions_stay_within_the_guideline():
    """Files under 400 lines, functions under 60 (docstring included)."""
    long_files, long_functions = [], []
    for path, src in _sources().items():
        if src.count("\n") > 400:
            long_files.append((path, src.count("\n")))
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long_functions.append((path, node.name, node.end_lineno - node.lineno + 1))
    assert long_files == [] and long_functions == [], (long_files, long_functions)


def test_one_write_then_rename_and_one_box_iou():
    """Only mrcnn/io/fsio.py renames a temp file into place; only the box library computes box
    IoU (structures/boxes.py for NumPy, structures/boxes_tf.py for TensorFlow)."""
    renames = [p for p, src in _sources().items() if "os.replace(" in src or "os.rename(" in src]
    assert renames == [os.path.join("mrcnn", "io", "fsio.py")], renames
    # Box IoU clips corners (a maximum of the starts, a minimum of the ends) before the union;
    # mask IoU (metrics.compute_overlaps_masks) counts pixels and is another idea.
    union = [p for p, src in _sources().items()
             if "union" in src and "minimum(" in src and "maximum(" in src]
    assert sorted(union) == [os.path.join("mrcnn", "structures", "boxes.py"),
                             os.path.join("mrcnn", "structures", "boxes_tf.py")], union


def test_bench_uses_no_private_name_of_the_package():
    private = []
    for path, src in _sources(("bench",), ()).items():
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", "os", "sys")):
                    private.append((path, node.lineno, node.attr))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                private += [(path, node.lineno, a.name) for a in node.names if a.name.startswith("_")]
    assert private == [], private

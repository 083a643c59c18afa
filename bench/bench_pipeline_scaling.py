"""Input-pipeline throughput alone (no model): images/s of ``mrcnn.data.data_pipeline.InputPipeline``
with 1 core and with 2 (``taskset``), at 1024 and 512 px, with and without augmentation.

Data: ``--images`` JPEG photos-like images (1024x768 noise with 3..8 filled shapes, quality 90)
and one 1-bit PNG mask per instance, written once to ``--data`` and read back per sample with
PIL, as a file-backed ``mrcnn.utils.Dataset`` does; every sample is decoded, resized to S x S
(``IMAGE_RESIZE_MODE="square"``), mini-masked and given RPN targets (ResNet FPN anchors at S).
Augmentation: ``mrcnn.data.augment.Augmenter()`` (AUGMENT=True). Each setting runs in a child
process pinned with ``taskset -c`` to the cores given; settings alternate in ``--rounds`` rounds
so load changes on a shared machine hit all of them. A child also reports its CPU time over
wall time (cores kept busy) and, with ``--threads-vs-processes``, the same samples prepared by
``prepare_sample`` in 2 threads and in 2 processes (the GIL's share of the limit).
``--loaders processes`` runs the pipeline with ``InputPipeline(workers=<cores>)`` (forked
worker processes, ``mrcnn.data.process_loader``) instead of the threaded ``tf.numpy_function`` map.

    .venv/bin/python -m bench.bench_pipeline_scaling [--sizes 1024,512] [--cores 0 0,1]
                                                    [--rounds 2] [--seconds 8] [--loaders threads,processes]

Prints a table and writes bench/results/pipeline_scaling.json.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SOURCE_SHAPE = (768, 1024)   # height, width of the stored images (a typical Open Images photo)
NUM_CLASSES = 81


def write_images(folder, count, seed=0):
    """``count`` JPEGs with 1-bit PNG masks under ``folder`` (kept between runs)."""
    from PIL import Image

    from bench.bench_train import synthetic_dataset

    os.makedirs(folder, exist_ok=True)
    if os.path.exists(os.path.join(folder, "done")):
        return
    # bench_train's drawing at the source size: noise with filled ellipses and rectangles.
    source = synthetic_dataset(max(SOURCE_SHAPE), count, seed)
    for i in range(count):
        image = source.load_image(i)[: SOURCE_SHAPE[0], : SOURCE_SHAPE[1]]
        masks, class_ids = source.load_mask(i)
        masks = masks[: SOURCE_SHAPE[0], : SOURCE_SHAPE[1]]
        keep = masks.reshape(-1, masks.shape[-1]).any(0)
        Image.fromarray(image).save(os.path.join(folder, f"{i}.jpg"), quality=90)
        for k, c in enumerate(class_ids[keep]):
            Image.fromarray(masks[..., keep][..., k]).convert("1").save(os.path.join(folder, f"{i}_{k}_{c}.png"))
    open(os.path.join(folder, "done"), "w").close()


def file_dataset(folder):
    """A ``mrcnn.utils.Dataset`` reading the files of ``write_images``."""
    from PIL import Image

    from mrcnn.utils import Dataset

    class FileDataset(Dataset):
        def load_image(self, image_id):
            return np.asarray(Image.open(self.image_info[image_id]["path"]).convert("RGB"))

        def load_mask(self, image_id):
            # As dataset.convert.record_to_masks: each instance decoded into an [N, H, W] buffer,
            # returned as its [H, W, N] view.
            info = self.image_info[image_id]
            out = np.zeros((len(info["masks"]),) + SOURCE_SHAPE, bool)
            for k, m in enumerate(info["masks"]):
                with Image.open(os.path.join(folder, m)) as im:
                    out[k] = np.asarray(im, dtype=bool)
            ids = [int(m.rsplit("_", 1)[1][:-4]) for m in info["masks"]]
            return out.transpose(1, 2, 0), np.array(ids, np.int32)

    ds = FileDataset()
    for c in range(1, NUM_CLASSES):
        ds.add_class("synthetic", c, f"class{c}")
    names = sorted(os.listdir(folder))
    for name in names:
        if name.endswith(".jpg"):
            i = name[:-4]
            masks = [m for m in names if m.startswith(i + "_") and m.endswith(".png")]
            ds.add_image("synthetic", int(i), os.path.join(folder, name), masks=masks,
                         height=SOURCE_SHAPE[0], width=SOURCE_SHAPE[1])
    ds.prepare()
    return ds


def make_config(size, augment, batch=2):
    from mrcnn.config import Config

    class PipelineConfig(Config):
        NAME = "pipeline_scaling"
        BACKBONE = "resnet50"
        NUM_CLASSES = 81
        IMAGE_MIN_DIM = size
        IMAGE_MAX_DIM = size
        IMAGES_PER_GPU = batch
        AUGMENT = augment
        SEED = 1

    return PipelineConfig()


def measure(folder, size, augment, seconds, skip=2, workers=0):
    """Images/s of the pipeline over about ``seconds`` after ``skip`` batches, plus CPU/wall
    (of this process; with ``workers`` processes, their CPU time is not counted)."""
    from mrcnn.data.augment import Augmenter
    from mrcnn.data.data_pipeline import InputPipeline

    config = make_config(size, augment)
    ds = file_dataset(folder)
    # workers only when asked: the bench also runs against older trees without the option.
    pipe = InputPipeline(ds, config, ds.image_ids, augmentation=Augmenter() if augment else None, seed=1,
                         **({"workers": workers} if workers else {}))
    # A bounded stream: epoch_order's concatenation grows quadratically with the step count.
    it = iter(pipe.stream(0, 1000))
    for _ in range(skip):
        next(it)
    images, t0, c0 = 0, time.perf_counter(), time.process_time()
    for batch in it:
        images += int(batch["image"].shape[0])
        if time.perf_counter() - t0 >= seconds:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"images_per_second": images / wall, "images": images, "wall_seconds": wall,
            "cpu_seconds": cpu, "cores_busy": cpu / wall}


def threads_vs_processes(folder, size, augment, samples=12):
    """Seconds for ``samples`` prepare_sample calls: 1 thread, 2 threads, 2 processes."""
    import concurrent.futures as futures

    one = _prepare_range(folder, size, augment, 0, samples)
    t = time.perf_counter()
    with futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda k: _prepare_range(folder, size, augment, k, samples, 2), range(2)))
    threads = time.perf_counter() - t
    t = time.perf_counter()
    with futures.ProcessPoolExecutor(2) as pool:   # each worker imports once, then prepares
        list(pool.map(_prepare_range, [folder] * 2, [size] * 2, [augment] * 2, range(2), [samples] * 2, [2] * 2))
    processes = time.perf_counter() - t
    return {"samples": samples, "one_thread_seconds": one, "two_threads_seconds": threads,
            "two_processes_seconds_incl_start": processes}


def stage_scaling(folder, size, samples=32):
    """Per-sample ms of each stage of ``prepare_sample`` (no augmentation) in one thread, and its
    speed-up when two threads share the samples; plus a GIL-free 4 MB copy as the machine's
    reference for what two threads can give."""
    import concurrent.futures as futures

    from mrcnn import utils
    from mrcnn.data.rpn_targets import AnchorIndex, build_rpn_targets
    from mrcnn.structures.anchors import get_anchors

    config = make_config(size, False)
    ds = file_dataset(folder)
    ids = [ds.image_ids[k % len(ds.image_ids)] for k in range(8)]
    raw = [(ds.load_image(i),) + tuple(ds.load_mask(i)) for i in ids]
    fit = []
    for image, mask, class_ids in raw:
        image, _, scale, padding, crop = utils.resize_image(image, min_dim=size, max_dim=size, mode="square")
        mask = utils.resize_mask(mask, scale, padding, crop)
        fit.append((mask, class_ids, utils.extract_bboxes(mask)))
    anchors = AnchorIndex(get_anchors(config, (size, size), normalized=False))
    src, dst = np.ones(4 << 20, np.uint8), np.empty(4 << 20, np.uint8)

    def resize(k):
        image, mask, _ = raw[k % 8]
        _, _, scale, padding, crop = utils.resize_image(image, min_dim=size, max_dim=size, mode="square")
        utils.resize_mask(mask, scale, padding, crop)

    def boxes_and_mini_masks(k):
        mask = fit[k % 8][0]
        mask = mask[:, :, mask.any(axis=0).any(axis=0)]
        utils.minimize_mask(utils.extract_bboxes(mask), mask, config.MINI_MASK_SHAPE)

    stages = {"load_image": lambda k: ds.load_image(ids[k % 8]), "load_mask": lambda k: ds.load_mask(ids[k % 8]),
              "resize": resize, "boxes_and_mini_masks": boxes_and_mini_masks,
              "rpn_targets": lambda k: build_rpn_targets(anchors, fit[k % 8][1], fit[k % 8][2], 256,
                                                         config.RPN_BBOX_STD_DEV, rng=np.random.default_rng(k)),
              "gil_free_4mb_copy (reference)": lambda k: [np.copyto(dst, src) for _ in range(10)]}
    out = {}
    for name, fn in stages.items():
        for k in range(2):
            fn(k)
        t = time.perf_counter()
        for k in range(samples):
            fn(k)
        one = time.perf_counter() - t
        t = time.perf_counter()
        with futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda start: [fn(k) for k in range(start, samples, 2)], range(2)))
        out[name] = {"ms_per_sample": one / samples * 1000, "two_thread_speedup": one / (time.perf_counter() - t)}
    return out


def _prepare_range(folder, size, augment, start, count, step=1):
    from mrcnn.structures.anchors import get_anchors
    from mrcnn.data.augment import Augmenter
    from mrcnn.data.inputs import prepare_sample
    from mrcnn.data.rpn_targets import AnchorIndex

    config = make_config(size, augment)
    ds = file_dataset(folder)
    anchors = AnchorIndex(get_anchors(config, (size, size), normalized=False))
    t = time.perf_counter()
    for k in range(start, count, step):
        prepare_sample(ds, config, ds.image_ids[k % len(ds.image_ids)], anchors,
                       augmentation=Augmenter() if augment else None, rng=np.random.default_rng(k))
    return time.perf_counter() - t


def run_child(cores, args, size, augment, extra=(), workers=0):
    cmd = ["taskset", "-c", cores, sys.executable, "-m", "bench.bench_pipeline_scaling", "--child",
           "--data", args.data, "--sizes", str(size), "--seconds", str(args.seconds), "--workers", str(workers)]
    cmd += ["--augment"] if augment else []
    out = subprocess.run(cmd + list(extra), capture_output=True, text=True, check=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1024,512")
    ap.add_argument("--cores", nargs="+", default=["0", "0,1"], help="taskset core lists")
    ap.add_argument("--augment-settings", default="0,1", help="0 (off), 1 (on) or both")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8.0, help="timed seconds per child")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--data", default=os.path.join("/tmp", "bench_pipeline_scaling_data"))
    ap.add_argument("--threads-vs-processes", action="store_true")
    ap.add_argument("--loaders", default="threads", help="threads (tf.numpy_function map), processes "
                    "(InputPipeline(workers=cores)) or both, comma-separated")
    ap.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--augment", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.path.join("bench", "results", "pipeline_scaling.json"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.child:
        result = measure(args.data, sizes[0], args.augment, args.seconds, workers=args.workers)
        if args.threads_vs_processes:
            result["threads_vs_processes"] = threads_vs_processes(args.data, sizes[0], args.augment)
            result["stages"] = stage_scaling(args.data, sizes[0])
        print(json.dumps(result))
        return result
    write_images(args.data, args.images)
    augments = [bool(int(a)) for a in args.augment_settings.split(",")]
    runs = []
    for r in range(args.rounds):
        for size in sizes:
            for augment in augments:
                for cores, loader in ((c, lo) for lo in args.loaders.split(",") for c in args.cores):
                    workers = len(cores.split(",")) if loader == "processes" else 0
                    res = run_child(cores, args, size, augment, workers=workers)
                    res.update(round=r + 1, size=size, augment=augment, cores=cores, loader=loader,
                               loadavg_1min=os.getloadavg()[0])
                    runs.append(res)
                    print(f"  round {r + 1} {size} px aug={int(augment)} {loader} cores {cores}: "
                          f"{res['images_per_second']:.2f} images/s, {res['cores_busy']:.2f} cores busy, "
                          f"load {res['loadavg_1min']:.1f}", flush=True)
    table = [row for loader in args.loaders.split(",")
             for row in summarise([r for r in runs if r["loader"] == loader], sizes, augments, args.cores, loader)]
    diagnosis = None
    if args.threads_vs_processes:
        child = run_child(",".join(args.cores[-1].split(",")), args, sizes[0], False,
                          ["--threads-vs-processes", "--seconds", "0.1"])
        diagnosis = dict(child["threads_vs_processes"], stages=child["stages"])
        print(f"prepare_sample x{diagnosis['samples']} at {sizes[0]} px: 1 thread "
              f"{diagnosis['one_thread_seconds']:.2f} s, 2 threads {diagnosis['two_threads_seconds']:.2f} s, "
              f"2 processes {diagnosis['two_processes_seconds_incl_start']:.2f} s")
        for name, st in child["stages"].items():
            print(f"  {name:<30} {st['ms_per_sample']:7.2f} ms/sample, 2 threads {st['two_thread_speedup']:.2f}x")
    from mrcnn.io.fsio import atomic_write_json

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    record = {"command": "python -m bench.bench_pipeline_scaling " + " ".join(argv if argv is not None else sys.argv[1:]),
              "table": table, "runs": runs, "threads_vs_processes": diagnosis, "cpu_count": os.cpu_count()}
    atomic_write_json(args.out, record)
    print(f"wrote {args.out}")
    return record


def summarise(runs, sizes, augments, cores_list, loader):
    """Median images/s per (size, augment, cores) and the last core list's ratio to the first."""
    table = []
    print(f"\n{loader}:\n{'size':>5} {'aug':>4} " + " ".join(f"{'cores ' + c:>14}" for c in cores_list)
          + f" {'ratio':>7}")
    for size in sizes:
        for augment in augments:
            med = [float(np.median([r["images_per_second"] for r in runs if r["size"] == size
                                    and r["augment"] == augment and r["cores"] == c])) for c in cores_list]
            ratio = med[-1] / med[0]
            table.append({"loader": loader, "size": size, "augment": augment,
                          "images_per_second": dict(zip(cores_list, med)),
                          "ratio_last_to_first": ratio})
            print(f"{size:>5} {int(augment):>4} " + " ".join(f"{m:14.2f}" for m in med) + f" {ratio:7.2f}")
    return table


if __name__ == "__main__":
    main()

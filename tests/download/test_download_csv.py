"""The streaming CSV filter and class-name resolution (pure functions, no server)."""
import io
import random

import pytest

from download.annotations import HEADER, CsvFormatError, RowFilter
from download.classes import ClassResolutionError, parse_descriptions, parse_segmentation, resolve
from download.net import Truncated

MID = "/m/01yrx"


def make_csv(n=400, seed=0, crlf=False):
    rng = random.Random(seed)
    nl = "\r\n" if crlf else "\n"
    lines, kept = [",".join(HEADER)], []
    for i in range(n):
        mid = rng.choice([MID, "/m/0bt9lr", "/m/01yrxx", "/m/0kmg4"])
        iid = "%016x" % rng.getrandbits(64)
        row = "%s_%s_%08x.png,%s,%s,%08x,0.1,0.5,0.2,0.6,0.8,0.1 0.2 1;0.3 0.4 0" % (
            iid, mid.replace("/", ""), i, iid, mid, i)
        lines.append(row)
        if mid == MID:
            kept.append(row)
    # a row whose BoxID cell holds the MID: the needle matches, the column check must reject it
    lines.append("x_m0bt9lr_1.png,abcdef0123456789,/m/0bt9lr,%s,0.1,0.5,0.2,0.6,0.8," % MID)
    return (nl.join(lines) + nl).encode(), kept


def run_filter(data, chunks):
    out = io.BytesIO()
    f = RowFilter(MID, out)
    i = 0
    for n in chunks:
        f.feed(data[i:i + n])
        i += n
    f.feed(data[i:])
    f.finish()
    return out.getvalue().decode().splitlines(), f.kept


@pytest.mark.parametrize("crlf", [False, True])
def test_filter_keeps_exactly_the_class_rows_whatever_the_chunking(crlf):
    data, kept = make_csv(crlf=crlf)
    whole, n = run_filter(data, [])
    assert whole == kept and n == len(kept) > 50
    rng = random.Random(1)
    for _ in range(5):
        chunks = [rng.randint(1, 300) for _ in range(len(data) // 50)]
        assert run_filter(data, chunks)[0] == kept
    assert run_filter(data, [1] * len(data))[0] == kept   # byte by byte


def test_filter_detects_a_cut_body_and_a_wrong_header():
    data, _ = make_csv()
    with pytest.raises(Truncated, match="mid-line"):
        run_filter(data[:-5], [])
    with pytest.raises(Truncated, match="empty"):
        run_filter(b"", [])
    with pytest.raises(CsvFormatError, match="header"):
        run_filter(b"ImageID,Source,LabelName\n1,2,/m/01yrx\n", [])
    # A malformed row of the class is kept for group_rows, which skips and reports it (one bad
    # row must not cost the whole class).
    lines, kept = run_filter((",".join(HEADER) + "\nx,y,/m/01yrx,z\n").encode(), [])
    assert lines == ["x,y,/m/01yrx,z"] and kept == 1
    from download.split import group_rows
    by_image, rejected = group_rows([dict(zip(HEADER, ["x", "y", "/m/01yrx", "z"]),
                                          **{k: None for k in HEADER[4:]})], "validation")
    assert by_image == {} and "malformed row" in rejected[0]["reason"]


DESC = "/m/01yrx,Cat\n/m/0bt9lr,Dog\n/m/0kmg4,Teddy bear\n/m/07j7r,Tree\n/m/0cat2,Catamaran\n"
SEG = "/m/01yrx\n/m/0bt9lr\n/m/0kmg4\n"


@pytest.mark.parametrize("query", ["Cat", "cat", "CAT", " cAt ", "/m/01yrx"])
def test_resolve_any_case_and_mid(query):
    c = resolve(query, parse_descriptions(DESC), parse_segmentation(SEG))
    assert (c.mid, c.name) == ("/m/01yrx", "Cat")


def test_resolve_multi_word_and_errors():
    desc, seg = parse_descriptions(DESC), parse_segmentation(SEG)
    assert resolve("teddy   BEAR", desc, seg).mid == "/m/0kmg4"
    with pytest.raises(ClassResolutionError, match=r"Unknown class 'Kat'; did you mean Cat\?"):
        resolve("Kat", desc, seg)
    with pytest.raises(ClassResolutionError, match=r"did you mean Teddy bear\?"):
        resolve("teddy bears", desc, seg)
    with pytest.raises(ClassResolutionError, match="no segmentation masks"):
        resolve("tree", desc, seg)
    with pytest.raises(ClassResolutionError, match="Unknown class 'zzzz'; see"):
        resolve("zzzz", desc, seg)
    dup = parse_descriptions(DESC + "/m/0dup,Cat\n")
    with pytest.raises(ClassResolutionError, match="ambiguous"):
        resolve("cat", dup, seg | {"/m/0dup"})
    assert resolve("cat", dup, seg).mid == "/m/01yrx"   # only one of the two has masks

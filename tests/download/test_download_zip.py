"""Zip parsing and the range-reading shard reader (directory cache, sorted search, fallbacks)."""
import logging
import os
import random
import struct
import zipfile

import pytest

from download import zipdir
from download.mirror.build import filler_members, write_zip
from download.mirror.testing import running
from download.net import Net
from download.remote_zip import MissingMember, ShardReader

N_MEMBERS = 3000   # real-shaped: ~1.7 KB members with real-length names


def net():
    return Net(workers=4, timeout=5, retries=2, backoff=0.01)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A sorted and a shuffled real-shaped shard, served; plus the member list."""
    d = tmp_path_factory.mktemp("zips")
    rng = random.Random(5)
    members = filler_members(rng, "7", N_MEMBERS)
    members[10] = (members[10][0], b"\x89PNG" + b"deflate me " * 300, zipfile.ZIP_DEFLATED)
    write_zip(str(d / "openimages" / "sorted.zip"), members)
    write_zip(str(d / "openimages" / "shuffled.zip"), members, shuffle=random.Random(1))
    with running(str(d)) as srv:
        yield d, srv, {n: data for n, data, _ in members}


def want(members, frac=0.005, seed=0):
    names = sorted(members)
    return random.Random(seed).sample(names, max(1, int(len(names) * frac)))


def test_parse_matches_zipfile(shards):
    d, _, members = shards
    path = d / "openimages" / "sorted.zip"
    data = path.read_bytes()
    cd = zipdir.find_directory(data[-4096:], len(data) - 4096)
    entries = zipdir.parse_all(data[cd.offset:cd.offset + cd.size])
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    assert cd.count == len(infos) == len(entries) == N_MEMBERS
    for e, i in zip(entries, infos):
        assert (e.name, e.header_offset, e.csize, e.size, e.crc, e.method) == \
            (i.filename, i.header_offset, i.compress_size, i.file_size, i.CRC, i.compress_type)
    for e in entries[8:12]:   # stored and deflated members decode and pass their CRC
        assert zipdir.member_payload(data[e.header_offset:], e) == members[e.name]
    o = entries[9].header_offset + 200   # inside the data
    bad = data[:o] + bytes([data[o] ^ 1]) + data[o + 1:]
    with pytest.raises(zipdir.ZipFormatError, match="CRC"):
        zipdir.member_payload(bad[entries[9].header_offset:], entries[9])


def test_zip64_end_records(tmp_path):
    """A directory described only by Zip64 end records (as in zips of >65535 members)."""
    p = tmp_path / "a.zip"
    write_zip(str(p), [("a.png", b"x" * 10, zipfile.ZIP_STORED), ("b.png", b"y" * 20, zipfile.ZIP_STORED)])
    data = p.read_bytes()
    cd = zipdir.find_directory(data, 0)
    body = data[:cd.offset + cd.size]
    rec = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 2, 2, cd.size, cd.offset)
    loc = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(body), 1)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    z64 = body + rec + loc + eocd
    assert zipdir.find_directory(z64, 0) == zipdir.Directory(cd.offset, cd.size, 2)
    tail_start = len(z64) - 42   # locator + end record only: the zip64 record lies before this tail: caller must fetch from there
    assert zipdir.find_directory(z64[tail_start:], tail_start) == len(body)


def test_resync_skips_a_signature_inside_an_extra_field():
    zi = zipfile.ZipInfo("n.png")
    zi.extra = struct.pack("<HH", 0x9999, 8) + b"PK\x01\x02abcd"
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zi, b"1")
        zf.writestr("o.png", b"2")
    data = buf.getvalue()
    cd = zipdir.find_directory(data, 0)
    dbuf = data[cd.offset:cd.offset + cd.size]
    first = zipdir.parse_entry(dbuf, 0)
    fake = dbuf.find(b"PK\x01\x02", 4)
    assert fake < first.length   # the stray signature sits inside the first entry
    assert zipdir.resync(dbuf, 1, cd.size, 0) == first.length


@pytest.mark.parametrize("mode", ["full", "search", "auto"])
def test_reads_half_a_percent_of_members_for_under_ten_percent_of_the_bytes(shards, tmp_path, mode):
    d, srv, members = shards
    size = os.path.getsize(d / "openimages" / "sorted.zip")
    names = want(members)
    n = net()
    r = ShardReader(n, srv.base_url + "sorted.zip", str(tmp_path), mode=mode)
    got = r.read(names)
    assert got == {k: members[k] for k in names}
    fetched = n.stats.as_dict()["bytes_total"]
    member_bytes = sum(len(members[k]) for k in names)
    assert fetched <= 0.10 * size, (mode, fetched, size)
    assert fetched >= member_bytes
    if mode == "search":
        assert r.strategy == "search"
        assert fetched < r.cd.size + member_bytes + 16384   # less than the whole directory would cost


def test_search_reads_a_few_pages_for_a_few_members(shards, tmp_path):
    d, srv, members = shards
    names = want(members)[:2]
    n = net()
    r = ShardReader(n, srv.base_url + "sorted.zip", str(tmp_path), mode="auto")
    assert r.read(names) == {k: members[k] for k in names}
    assert r.strategy == "search"
    dir_bytes = n.stats.bytes["zip_directory"]
    assert dir_bytes <= 8 * (4096 + 384) and dir_bytes < 0.2 * r.cd.size, (dir_bytes, r.cd.size)


def test_directory_is_cached_across_readers(shards, tmp_path):
    d, srv, members = shards
    url = srv.base_url + "sorted.zip"
    names = want(members)
    ShardReader(net(), url, str(tmp_path), mode="full").read(names)
    n = net()
    other = want(members, seed=1)
    assert ShardReader(n, url, str(tmp_path), mode="auto").read(other) == {k: members[k] for k in other}
    req = n.stats.as_dict()["requests"]
    assert "zip_directory" not in req and "zip_tail" not in req   # only member requests
    assert req["zip_members"] <= len(other)


def test_unsorted_directory_falls_back_to_the_whole_directory(shards, tmp_path):
    d, srv, members = shards
    names = want(members)
    n = net()
    r = ShardReader(n, srv.base_url + "shuffled.zip", str(tmp_path), mode="search")
    assert r.read(names) == {k: members[k] for k in names}
    assert r.strategy == "full" and n.stats.events["zip_unsorted"] == 1


def test_missing_member_is_confirmed_by_the_whole_directory(shards, tmp_path):
    d, srv, members = shards
    names = want(members)[:2] + ["7000000000000000_m0abc_00000000.png", "7fffffffffffffff_m0zz_ffffffff.png"]
    r = ShardReader(net(), srv.base_url + "sorted.zip", str(tmp_path), mode="search")
    got = r.read(names)
    assert isinstance(got[names[2]], MissingMember) and isinstance(got[names[3]], MissingMember)
    assert got[names[0]] == members[names[0]]
    assert r.strategy == "full"


def test_server_without_range_downloads_the_shard_once(shards, tmp_path, caplog):
    d, _, members = shards
    names = want(members)
    with running(str(d), no_range=True) as srv:
        url = srv.base_url + "sorted.zip"
        with caplog.at_level(logging.WARNING, logger="download"):
            got = ShardReader(net(), url, str(tmp_path)).read(names)
        assert got == {k: members[k] for k in names}
        assert "ignores HTTP Range" in caplog.text
        assert os.path.isfile(tmp_path / "zips" / "sorted.zip")
        again = ShardReader(net(), url, str(tmp_path)).read(want(members, seed=2))
        assert len(again) == len(names)
        assert srv.requests_per_path()["/openimages/sorted.zip"] == 2   # the ignored range + one download


def test_stale_cache_is_detected_and_rebuilt(tmp_path):
    site = tmp_path / "site" / "openimages"
    a = [("%016x_m0a_%08x.png" % (i << 56, i), bytes([i]) * 100, zipfile.ZIP_STORED) for i in range(1, 9)]
    write_zip(str(site / "s.zip"), a)
    cache = str(tmp_path / "cache")
    with running(str(tmp_path / "site")) as srv:
        url = srv.base_url + "s.zip"
        assert ShardReader(net(), url, cache, mode="full").read([a[0][0]]) == {a[0][0]: a[0][1]}
        b = [(n, d * 2, c) for n, d, c in a]   # same names, other sizes: the cached directory is wrong now
        write_zip(str(site / "s.zip"), b)
        assert ShardReader(net(), url, cache, mode="full").read([b[3][0]]) == {b[3][0]: b[3][1]}


def test_long_comment_and_entries_longer_than_the_page_overlap(tmp_path):
    """End record behind a 10 KB comment; directory entries with 600-byte extra fields cut by pages."""
    site = tmp_path / "site" / "openimages"
    site.mkdir(parents=True)
    rng = random.Random(3)
    members = {}
    with zipfile.ZipFile(site / "c.zip", "w") as zf:
        for i in range(400):
            name = "%016x_m0abc_%08x.png" % (rng.getrandbits(64), i)
            members[name] = rng.randbytes(50)
        for name in sorted(members):
            zi = zipfile.ZipInfo(name)
            if len(zi.filename) and rng.random() < 0.3:
                zi.extra = struct.pack("<HH", 0x9999, 600) + b"PK\x01\x02" * 150
            zf.writestr(zi, members[name])
        zf.comment = b"c" * 10000
    names = sorted(members)[::37]
    with running(str(tmp_path / "site")) as srv:
        for mode in ("search", "full"):
            r = ShardReader(net(), srv.base_url + "c.zip", str(tmp_path / mode), mode=mode)
            assert r.read(names) == {n: members[n] for n in names}
            assert r.strategy == mode


def test_server_refusing_suffix_ranges(shards, tmp_path):
    d, _, members = shards
    names = want(members)[:3]
    with running(str(d)) as srv:
        srv.no_suffix_range = True
        got = ShardReader(net(), srv.base_url + "sorted.zip", str(tmp_path)).read(names)
        assert [e[0] for e in srv.log[:3]] == ["GET", "HEAD", "GET"]   # refused suffix, size, plain range
    assert got == {k: members[k] for k in names}

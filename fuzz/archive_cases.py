"""`.tar.gz` sources (`iam_ondb.scan_source`): every good member read with its bytes, every
unsafe one listed with its reason, a broken archive or a bomb an error naming the archive.

A case is a list of members, good and hostile, and an attack on the archive's bytes; it is
written into a fresh source folder (with a transcription folder and the split lists) and
scanned.
"""

import dataclasses
import functools
import os
import random
import tarfile
import tempfile
import zlib

from hypothesis import strategies as st

from data_prep import iam_ondb

ARCHIVE = "lineStrokes-all.tar.gz"
GOOD_PREFIXES = ("", "./", "lineStrokes-all/")
HOSTILE = (
    "dotdot",
    "absolute",
    "windows",
    "backslash",
    "inner dotdot",
    "symlink",
    "hardlink",
    "character device",
    "block device",
    "fifo",
    "unknown type",
    "too large",
)
ARCHIVE_ATTACKS = ("none", "flip", "truncate", "junk", "trailing")
RARE_ATTACKS = ("bomb", "entry flood")  # seconds each: one case in 100


@dataclasses.dataclass(frozen=True)
class ArchiveCase:
    good: int  # good line files
    hostile: tuple  # kinds of hostile members
    ignored: int  # members outside lineStrokes/, which are not read
    attack: str
    seed: int


@st.composite
def archive_cases(draw, rare=True):
    seed = draw(st.integers(0, 2**32 - 1))
    attack = draw(st.sampled_from(ARCHIVE_ATTACKS))
    # Drawn from the seed, not by Hypothesis, which favours the ends of a range.
    if rare and random.Random(seed).random() < 0.01:
        attack = draw(st.sampled_from(RARE_ATTACKS))
    return ArchiveCase(
        draw(st.integers(1, 6)),
        tuple(draw(st.lists(st.sampled_from(HOSTILE), max_size=4, unique=True))),
        draw(st.integers(0, 2)),
        attack,
        seed,
    )


def _member(name, data=None, kind=tarfile.REGTYPE, linkname="", size=None):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, linkname, 1_100_000_000
    info.size = len(data) if data is not None else (size or 0)
    return info, data


def build_archive(case: ArchiveCase, rng):
    """Returns `(archive bytes, {relpath: bytes} of good members, [labels of unsafe ones])`."""
    members, good, unsafe = [], {}, []
    for k in range(1, case.good + 1):
        relpath = f"lineStrokes/a01/a01-000/a01-000u-{k:02d}.xml"
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        members.append(_member(rng.choice(GOOD_PREFIXES) + relpath, data))
        good[relpath] = data
    for k in range(case.ignored):
        members.append(_member(rng.choice(["README", f"docs/notes-{k}.txt", "ascii/x.txt"]), b"x"))
    for n, kind in enumerate(case.hostile):
        target = f"lineStrokes/a09/a09-000/a09-000u-{n:02d}.xml"
        name, member = target, None
        if kind == "dotdot":
            name = "../" * rng.randint(1, 3) + target
        elif kind == "absolute":
            name = "/" + target
        elif kind == "windows":
            name = "C:/" + target
        elif kind == "backslash":
            name = "lineStrokes\\..\\..\\" + f"evil-{n}.xml"
        elif kind == "inner dotdot":
            name = f"lineStrokes/a01/../../../evil-{n}.xml"
        if kind in ("dotdot", "absolute", "windows", "backslash", "inner dotdot"):
            member = _member(name, b"<evil/>")
        elif kind == "symlink":
            member = _member(name, kind=tarfile.SYMTYPE, linkname=rng.choice(["/etc/passwd", "/"]))
        elif kind == "hardlink":
            member = _member(name, kind=tarfile.LNKTYPE, linkname="/etc/shadow")
        elif kind == "character device":
            member = _member(name, kind=tarfile.CHRTYPE)
        elif kind == "block device":
            member = _member(name, kind=tarfile.BLKTYPE)
        elif kind == "fifo":
            member = _member(name, kind=tarfile.FIFOTYPE)
        elif kind == "unknown type":
            member = _member(name, b"data", kind=b"Z")
        else:  # a member larger than the size cap of a line file
            member = _member(name, None, size=iam_ondb.MAX_LINE_XML_BYTES + 1)
        members.append(member)
        unsafe.append(f"{ARCHIVE}:{name}")
    if case.attack == "bomb":  # zeros far beyond the bomb ratio, in a member nobody reads
        members.append(_member("docs/zeros.bin", None, size=iam_ondb.BOMB_ALLOWANCE * 4))
    rng.shuffle(members)
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing
    chunks = []
    for info, data in members:
        chunks.append(packer.compress(info.tobuf(tarfile.GNU_FORMAT)))
        if info.size:
            if data is None:
                for start in range(0, info.size, 1 << 20):
                    chunks.append(packer.compress(bytes(min(1 << 20, info.size - start))))
            else:
                chunks.append(packer.compress(data))
            chunks.append(packer.compress(bytes(-info.size % tarfile.BLOCKSIZE)))
    if case.attack == "entry flood":
        chunks.append(packer.compress(_flood()))
    chunks.append(packer.compress(bytes(tarfile.RECORDSIZE)))  # the end-of-archive blocks
    data = b"".join(chunks) + packer.flush()
    if case.attack == "trailing":  # zeros after the end of the tar, in a second gzip member
        trailer = zlib.compressobj(1, zlib.DEFLATED, 31)
        data += trailer.compress(bytes(1 << 20)) + trailer.flush()
    return data, good, unsafe


@functools.cache
def _flood() -> bytes:
    """The headers of more empty entries than an archive may hold."""
    info = tarfile.TarInfo("d/0")
    headers = []
    for k in range(iam_ondb.MAX_ARCHIVE_MEMBERS + 1):
        info.name = f"d/{k}"
        headers.append(info.tobuf(tarfile.GNU_FORMAT))
    return b"".join(headers)


def write_source(folder, archive: bytes) -> str:
    """A source folder: the archive, one transcription folder, the four split lists."""
    os.makedirs(os.path.join(folder, "ascii", "a01", "a01-000"))
    with open(os.path.join(folder, "ascii", "a01", "a01-000", "a01-000u.txt"), "wb") as f:
        f.write(b"CSR:\n\nA MOVE\n")
    for name in iam_ondb.SPLIT_LISTS:
        with open(os.path.join(folder, f"{name}.txt"), "wb") as f:
            f.write(b"a01-000u\n" if name == "trainset" else b"")
    with open(os.path.join(folder, ARCHIVE), "wb") as f:
        f.write(archive)
    return folder


def check_archive(case: ArchiveCase) -> str:
    rng = random.Random(case.seed)
    data, good, unsafe = build_archive(case, rng)
    expect_error = case.attack in ("bomb", "entry flood", "truncate")
    if case.attack == "flip":
        flipped = bytearray(data)
        # Past the gzip header (10 bytes), whose fields do not change the content.
        for _ in range(rng.randint(1, 3)):
            flipped[rng.randrange(10, len(data))] ^= 1 << rng.randrange(8)
        data = bytes(flipped)
    elif case.attack == "truncate":
        data = data[: rng.randrange(len(data))]
    elif case.attack == "junk":
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 2000)))
        expect_error = True
    with tempfile.TemporaryDirectory() as folder:
        src = write_source(os.path.join(folder, "IAM-OnDB"), data)
        archive = os.path.join(src, ARCHIVE)
        try:
            inventory = iam_ondb.scan_source(src)
        except iam_ondb.PrepError as e:
            message = str(e)
            assert message.startswith(f"{archive}: "), message
            assert expect_error or case.attack == "flip", f"refused: {message}"
            return f"refused: {message[len(archive) + 2 :].split(' (')[0].split(',')[0]}"
    assert not expect_error, f"{case.attack} accepted"
    lines = {p: v for p, v in inventory.files.items() if p.startswith("lineStrokes/")}
    assert lines == good, sorted(set(lines) ^ set(good))
    problems = {p.file: p for p in inventory.problems}
    assert sorted(problems) == sorted(unsafe), (sorted(problems), sorted(unsafe))
    for label, problem in problems.items():
        assert problem.reason in ("unsafe archive member", "file too large"), problem
        assert problem.detail.startswith(f"{label}: "), problem
    return "accepted" if not unsafe else "accepted, unsafe members listed"

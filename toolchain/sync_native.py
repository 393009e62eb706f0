#!/usr/bin/env python3
"""Copy the project's native layers into a Caffe source tree (docs/DESIGN.md §2).

Every file under native/include and native/src is mirrored into the tree; a file is
rewritten only when its bytes change, so make recompiles only edited layers. Files that
were synced earlier and have since left native/ are removed. Each native/proto/*.proto
fragment is merged into src/caffe/proto/caffe.proto: its `// LayerParameter: ...` line
goes into message LayerParameter, the rest is appended. Adding a layer needs no edit
anywhere else.

Prints the comma-separated test names (for Caffe's BUILD_only_tests) on stdout.
Standard library only: it runs before the virtualenv exists.
"""
import argparse
import os
import re
import sys

MANIFEST = ".reid-native-manifest"
PROTO = os.path.join("src", "caffe", "proto", "caffe.proto")
ANCHOR = "optional ClipParameter clip_param = 148;"
FIELD_RE = re.compile(r"^// LayerParameter:\s*(optional\s+(\w+)\s+(\w+)\s*=\s*(\d+)\s*;)\s*$")


def fail(msg):
    sys.exit("setup: " + msg)


def write_if_changed(path, data):
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return True


def native_files(native):
    for sub in ("include", "src"):
        root = os.path.join(native, sub)
        for dirpath, _, names in os.walk(root):
            for n in sorted(names):
                full = os.path.join(dirpath, n)
                yield os.path.relpath(full, native)


def sync_files(native, tree):
    files = sorted(native_files(native))
    manifest = os.path.join(tree, MANIFEST)
    old = set(open(manifest).read().split()) if os.path.exists(manifest) else set()
    for rel in files:
        with open(os.path.join(native, rel), "rb") as f:
            if write_if_changed(os.path.join(tree, rel), f.read()):
                print("synced " + rel, file=sys.stderr)
    for rel in sorted(old - set(files)):
        path = os.path.join(tree, rel)
        if os.path.exists(path):
            os.remove(path)
            print("removed " + rel, file=sys.stderr)
    write_if_changed(manifest, ("\n".join(files) + "\n").encode())
    return files


def parse_fragment(path):
    """Return (LayerParameter field line, name, number, body) of one fragment."""
    lines = open(path).read().splitlines()
    fields = [FIELD_RE.match(l) for l in lines]
    found = [m for m in fields if m]
    if len(found) != 1:
        fail("%s: needs exactly one '// LayerParameter: optional XParameter x_param = N;' line"
             % path)
    m = found[0]
    body = "\n".join(l for l in lines if not FIELD_RE.match(l)).strip()
    if ("message " + m.group(2)) not in body:
        fail("%s: declares field type %s but defines no message of that name"
             % (path, m.group(2)))
    return m.group(1), m.group(3), int(m.group(4)), body


def merge_proto(native, tree):
    orig = os.path.join(tree, PROTO + ".orig")
    if not os.path.exists(orig):
        fail("%s missing: the Caffe tree was not prepared by setup.sh" % orig)
    text = open(orig).read()
    if ANCHOR not in text:
        fail("%s: anchor line '%s' not found" % (orig, ANCHOR))
    taken = {int(n) for n in re.findall(r"=\s*(\d+)\s*;", text.split("message LayerParameter")[1]
                                         .split("\n}\n")[0])}
    names, lines, bodies = set(), [], []
    proto_dir = os.path.join(native, "proto")
    for name in sorted(os.listdir(proto_dir)) if os.path.isdir(proto_dir) else []:
        if not name.endswith(".proto"):
            continue
        line, field, number, body = parse_fragment(os.path.join(proto_dir, name))
        if number in taken or field in names:
            fail("native/proto/%s: field %s = %d collides with another LayerParameter field"
                 % (name, field, number))
        taken.add(number)
        names.add(field)
        lines.append("  " + line)
        bodies.append("// From native/proto/%s\n%s\n" % (name, body))
    merged = text.replace(ANCHOR, "\n".join([ANCHOR] + lines))
    merged = merged.rstrip("\n") + "\n\n" + "\n".join(bodies)
    if write_if_changed(os.path.join(tree, PROTO), merged.encode()):
        print("merged caffe.proto (%d native fragments)" % len(bodies), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("native", help="the project's native/ folder")
    ap.add_argument("tree", help="the prepared Caffe source tree")
    args = ap.parse_args()
    files = sync_files(args.native, args.tree)
    merge_proto(args.native, args.tree)
    tests = [os.path.basename(f)[len("test_"):].rsplit(".", 1)[0] for f in files
             if re.match(r"src/caffe/test/test_\w+\.(cpp|cu)$", f)]
    print(",".join(sorted(set(tests))))


if __name__ == "__main__":
    main()

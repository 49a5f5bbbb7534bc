"""Hand-made mutants of the checkpoint, the operator cache and push (issue 33): apply one (an exact
text replacement), run that module's own test files, revert; print killed/survived and the kill rate.

    python benchmarks/mutants_workfolder.py . after            # this checkout
    python benchmarks/mutants_workfolder.py /tmp/old before    # a checkout of the code before (0e7b583)

Run it in a checkout nobody else is using: each mutant rewrites a source file while its tests run.
The "before" mutants are the same faults written against the code before the atomic-write module and
the checkpoint's line checks (the same fault, where the text moved)."""
import json, subprocess, sys, time
from pathlib import Path

from mutant_run import try_mutant  # benchmarks/ is sys.path[0] when this runs

root, which = Path(sys.argv[1]), sys.argv[2]
only = sys.argv[3] if len(sys.argv) > 3 else None
PY = str(root / ".venv/bin/python")

CK_AFTER = ["tests/test_checkpoint_index.py", "tests/test_checkpoint_damage.py", "tests/test_atomic_write.py",
            "tests/test_writer.py"]
CK_BEFORE = ["tests/test_checkpoint_index.py", "tests/test_writer.py"]
OC = ["tests/test_operators_cache_registry.py"]
PU_AFTER = ["tests/test_hub_push.py", "tests/test_push_during_generate.py", "-m", "not slow"]
PU_BEFORE = ["tests/test_hub_push.py", "-m", "not slow"]

M = {"checkpoint": [], "operator cache": [], "push": []}
def add(module, name, path, old, new, when=("before", "after")):
    M[module].append((name, path, old, new, when))

# ---- checkpoint
add("checkpoint", "append without fsync", "generation/checkpoint.py",
    "            if sync:\n                os.fsync(fd)", "            if False:\n                os.fsync(fd)")
add("checkpoint", "atomic replace without fsync", "generation/atomic.py",
    "            fh.flush()\n            os.fsync(fh.fileno())\n        os.replace(tmp, path)",
    "            fh.flush()\n        os.replace(tmp, path)", ("after",))
add("checkpoint", "atomic replace without fsync", "generation/checkpoint.py",
    "            fh.flush()\n            os.fsync(fh.fileno())\n        os.replace(tmp, path)",
    "            fh.flush()\n        os.replace(tmp, path)", ("before",))
add("checkpoint", "failed append not cut back", "generation/checkpoint.py",
    "                os.ftruncate(fd, start)", "                pass")
add("checkpoint", "torn tail not cut on reopen", "generation/checkpoint.py",
    '            fh.truncate(data.rfind(b"\\n") + 1)', "            pass")
add("checkpoint", "a later copy of an id counts too", "generation/checkpoint.py",
    "                if sample_id not in seen:", "                if True:")
add("checkpoint", "finished ids stay quarantined", "generation/checkpoint.py",
    "                if r.id not in done:", "                if True:", ("after",))
add("checkpoint", "finished ids stay quarantined", "generation/checkpoint.py",
    '                if r.get("id") not in done:', "                if True:", ("before",))
add("checkpoint", "index last entry never checked", "generation/checkpoint_index.py",
    "    if not entries:\n        return True\n    start, stop, sample_id = entries[-1][:3]",
    "    return True\n    start, stop, sample_id = entries[-1][:3]", ("after",))
add("checkpoint", "index last entry never checked", "generation/checkpoint.py",
    "    if not entries:\n        return True\n    start, stop, sample_id = entries[-1][:3]",
    "    return True\n    start, stop, sample_id = entries[-1][:3]", ("before",))
add("checkpoint", "rows lines not validated", "generation/checkpoint_lines.py",
    '    """What keeps a decoded rows line from being a finished sample; None when it is one."""\n',
    '    """What keeps a decoded rows line from being a finished sample; None when it is one."""\n    return None\n', ("after",))
add("checkpoint", "quarantine extra keys accepted", "generation/checkpoint_lines.py",
    "    if missing or extra:", "    if missing:", ("after",))
add("checkpoint", "stamp trusted in the same clock tick", "generation/checkpoint_index.py",
    '    return older and value.get("rows") == rows', '    return value.get("rows") == rows', ("after",))
add("checkpoint", "damage warned on every read", "generation/checkpoint_lines.py",
    "        if key not in Damage._warned:", "        if True:", ("after",))
add("checkpoint", "stamp ignores the index file", "generation/checkpoint_index.py",
    ' and value.get("idx") == idx', "", ("after",))

# ---- operator cache
for field in ("version", "backend", "images", "args"):
    old = {"images": '"images": [im.sha256 for im in images],'}.get(field, f'"{field}": {field},')
    add("operator cache", f"key without {field}", "operators/cache.py", old, "")
add("operator cache", "corrupt entry raises", "operators/cache.py",
    "except (FileNotFoundError, ValueError):", "except FileNotFoundError:")
add("operator cache", "put in place", "operators/cache.py",
    'write_atomic(path, result.model_dump_json(), suffix=".json")', "path.write_text(result.model_dump_json())",
    ("after",))
add("operator cache", "put in place", "operators/cache.py",
    '''        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            fh.write(result.model_dump_json())
        os.replace(tmp, path)''', "        path.write_text(result.model_dump_json())", ("before",))

# ---- push
add("push", "parent_commit=None", "publishing/push.py", "parent_commit=head,", "parent_commit=None,")
add("push", "tag on the branch", "publishing/push.py", "tag=tag, revision=info.oid,", "tag=tag, revision=BRANCH,")
add("push", "no tag-named-like-branch check", "publishing/push.py",
    "    if tag in {b.name for b in refs.branches}:", "    if False:")
add("push", "hidden files uploaded", "publishing/push.py",
    'if not path.is_file() or any(part.startswith(".") for part in rel.split("/")):', "if not path.is_file():")
add("push", "stale shards not deleted", "publishing/push.py",
    "    operations += [CommitOperationDelete(path) for path in stale]", "    operations += []")
add("push", "card shortfall not checked", "publishing/push.py", "    _check_card(root)\n", "")
add("push", "no wait for a running generate", "publishing/push.py",
    "        stack.enter_context(run_lock(root, shared=False, timeout_s=timeout_s, on_wait=generating))\n", "",
    ("after",))
add("push", "no wait for a running generate", "publishing/push.py",
    "        _lock_folder(stack, root, lock_timeout_s)\n", "", ("before",))

TESTS = {"checkpoint": CK_AFTER if which == "after" else CK_BEFORE, "operator cache": OC,
         "push": PU_AFTER if which == "after" else PU_BEFORE}


def tests_fail(tests) -> bool:
    try:
        proc = subprocess.run([PY, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=root, capture_output=True, text=True, timeout=900)
        return proc.returncode != 0
    except subprocess.TimeoutExpired:
        return True


results = {}
for module, mutants in M.items():
    if only and module != only:
        continue
    for name, path, old, new, when in mutants:
        if which not in when:
            continue
        t = time.time()
        killed = try_mutant(root / path, old, new, lambda: tests_fail(TESTS[module]))
        if killed is None:
            print(f"SKIP {module}: {name}: pattern found {(root / path).read_text().count(old)} times", flush=True)
            continue
        results.setdefault(module, []).append((name, killed))
        print(f"{module}: {name}: {'killed' if killed else 'SURVIVED'} ({time.time() - t:.0f} s)", flush=True)
for module, rows in results.items():
    print(f"== {module}: {sum(k for _, k in rows)}/{len(rows)} killed")

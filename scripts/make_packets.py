"""Regenerate the example replay packets in packets/demo/: one packet per failure bucket from a demo batch,
written by the SDK itself (configure(packets=True)). Run: .venv/bin/python scripts/make_packets.py"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    from agent_debug.demo.runner import run_demo

    out = ROOT / "packets" / "demo"
    with tempfile.TemporaryDirectory() as tmp:
        result = run_demo(tmp, 9, seed=11)
        packets = sorted(Path(result.packet_dir).rglob("*.json"))
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for p in packets:
            packet = orjson.loads(p.read_bytes())
            bucket = (packet.get("failure") or {}).get("bucket") or "unknown"
            target = out / f"{bucket}.json"
            shutil.copyfile(p, target)
            target.chmod(0o600)
            print(f"{target.relative_to(ROOT)}  {target.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Read an offline W&B run file (``run-<id>.wandb``) back, with wandb's own protobuf classes.

wandb 0.31 ships no reader, so this decodes its LevelDB-log-style container: a 7-byte header
(":W&B", magic 0xBEE1, version), then 32 KiB blocks of chunks ``crc32(4) | length(2, LE) | type(1) | data``
where type 1 = a whole record, 2/3/4 = first/middle/last piece of one; a block tail shorter than a chunk
header is padding. Each record is a ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32768
HEADER = 7
CHUNK = 7  # crc32 + length + type


def iter_records(path):
    """Yield ``wandb_internal_pb2.Record`` messages from a .wandb file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    pos, pieces = HEADER, b""
    while pos + CHUNK <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK:
            pos += left  # block padding
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        body = data[pos + CHUNK:pos + CHUNK + length]
        pos += CHUNK + length
        if kind == 0 and length == 0:
            continue
        pieces = body if kind in (1, 2) else pieces + body
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pieces)
            yield record
            pieces = b""


def read_run(path) -> dict:
    """Summarise a run file: config, history rows (key → value, plus ``_step``), summary, run attributes
    (id, group, name, job_type, tags) and the exit record (``exit``: its exit code, None if absent)."""
    out = {"config": {}, "history": [], "summary": {}, "run": {}, "exit": None}
    for rec in iter_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = {"id": rec.run.run_id, "group": rec.run.run_group, "name": rec.run.display_name,
                          "job_type": rec.run.job_type, "tags": list(rec.run.tags)}
            for item in rec.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            row = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item}
            if rec.history.HasField("step"):
                row.setdefault("_step", rec.history.step.num)
            out["history"].append(row)
        elif kind == "summary":
            for item in rec.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "exit":
            out["exit"] = rec.exit.exit_code
    return out

"""`neurobrowse info STORE`: what a store holds, whether it is complete and indexed, its size."""

from __future__ import annotations

import argparse
import json

from neurobrowse.formatting import human_bytes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="summarise a store: model, hooks, tokens, completeness, index state, size",
                       description="Summarise an activation store. An incomplete store is shown with the command "
                       "that resumes its recording.")
    p.add_argument("store", help="store directory")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def format_info(info: dict) -> str:
    m = info["model"]
    lines = [
        f"store       {info['path']}",
        f"model       {m['act_fn']}, {m['n_layers']} layer(s), d_model {m['d_model']}, d_mlp {m['d_mlp']}, "
        f"d_vocab {m['d_vocab']}, n_ctx {m['n_ctx']}",
        f"checkpoint  {info['checkpoint_path']} (sha256 {str(info['checkpoint_hash'])[:12]})",
        f"run         {info['run_uuid']}, recorded {info['created']}, neurobrowse {info['code_version']}, "
        f"schema v{info['schema_version']}",
        f"tokens      {info['n_tokens']:,} in contexts of {info['context_len']}, "
        f"{info['n_chunks']} chunk(s) of {info['chunk_tokens']:,} rows",
    ]
    if info["complete"]:
        lines.append("status      complete")
    else:
        lines.append(f"status      INCOMPLETE: {info['chunks_done']}/{info['n_chunks']} chunks recorded. Resume with:")
        lines.append(f"              {info['resume_command']}")
    lines.append("hooks")
    for hook, h in info["hooks"].items():
        if h["indexed"]:
            st = h["index_state"]
            k = st.get("k")
            state = f"indexed{f' (k={k})' if k else ''}"
        elif h["index_state"]:
            state = "index incomplete: run `neurobrowse index` to resume"
        else:
            state = "not indexed: run `neurobrowse index`"
        lines.append(f"  {hook:<28} {human_bytes(h['bytes_on_disk']):>9}   {state}")
    ratio = info["compression_ratio"]
    lines.append(
        f"size        {human_bytes(info['size_on_disk'])} on disk; activations {human_bytes(info['dense_bytes_raw'])} "
        f"raw -> {human_bytes(info['dense_bytes_on_disk'])} (compression ratio {ratio:.2f})"
        if ratio else f"size        {human_bytes(info['size_on_disk'])} on disk"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from store.reader import Store

    info = Store.open(args.store).info()
    print(json.dumps(info, indent=2, default=str) if args.json else format_info(info))
    return 0

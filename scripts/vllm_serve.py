#!/usr/bin/env python
"""Run a local CPU vLLM server with the embedded SmolLM2 (or another model folder) until Ctrl-C.

    python scripts/vllm_serve.py [--port 8000] [--model DIR] [--name smollm2]

Creates the vLLM venv first if needed (scripts/vllm_env.sh), then prints the URL to give SCR:
    scr --kb ./kb --backend vllm --vllm-url http://127.0.0.1:8000/v1 serve
"""

from __future__ import annotations

import argparse
import signal
import sys

from scr.llm.vllm_server import VLLMSetupError, ensure_venv, start_server
from scr.models import export_smollm2, set_offline_env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the embedded SmolLM2, exported to safetensors)")
    parser.add_argument("--name", default="smollm2", help="served model name (SCR's --vllm-model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--kv-cache-gib", type=float, default=1.0, help="CPU memory for the KV cache")
    args = parser.parse_args()

    set_offline_env()
    try:
        python = ensure_venv()
        model = args.model or str(export_smollm2())
        print(f"starting vLLM ({python}) with {model} ...", flush=True)
        server = start_server(model, python, served_name=args.name, host=args.host, port=args.port,
                              max_model_len=args.max_model_len, kv_cache_bytes=int(args.kv_cache_gib * (1 << 30)))
    except VLLMSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"vLLM is serving {args.name!r} at {server.url} (log: {server.log_path}); Ctrl-C stops it", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.process.wait()
        print(f"the vLLM server exited with code {server.process.returncode}; log:\n{server.log_tail()}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())

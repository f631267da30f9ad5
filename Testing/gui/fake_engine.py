"""A stand-in for ``python -m deepmed`` answering the two commands whose engine side is built elsewhere
(``list losses --app APP --json`` and ``doctor --json``), for panel tests only; anything else fails as an
unknown command does. The real commands are tested in Testing/engine."""

import json
import sys

LOSSES = {"segmentation": ["dice", "dice_ce", "cross_entropy"], "regression": ["l1", "mse", "huber"]}
REPORT = {"python": "3.12.10", "platform": "Linux-x86_64", "packages": {"torch": "2.13.0", "monai": "1.6.1",
          "SimpleITK": "2.5.7", "numpy": "2.4.6"}, "torch_cuda": None,
          "devices": [{"type": "cpu", "name": "x86_64, 2 cores"}],
          "check": {"device": "cpu", "ok": True, "seconds": 0.31, "message": "forward + backward pass"},
          "problems": [{"what": "no CUDA GPU visible", "fix": "training runs on the CPU (slow); install the NVIDIA "
                        "driver and a CUDA build of PyTorch (PyTorch Utils module) to use a GPU"}]}


def main(argv):
    if argv[:2] == ["list", "losses"] and "--json" in argv:
        print(json.dumps(LOSSES[argv[argv.index("--app") + 1]]))
        return 0
    if argv[:1] == ["doctor"] and "--json" in argv:
        device = argv[argv.index("--device") + 1] if "--device" in argv else "auto"
        print(json.dumps({**REPORT, "check": {**REPORT["check"], "device": "cpu" if device == "auto" else device}}))
        return 1
    print(f"deepmed: error: unknown command {' '.join(argv)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

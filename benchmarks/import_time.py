"""Start-up cost: wall time of ``import hf_mmfusion`` and of ``hf-mmfusion --help`` in fresh
subprocesses, against ``import torch``, ``from transformers import AutoConfig`` (what registering the
configs needs: the floor of the package's import) and ``import transformers.modeling_utils`` (what
registering the model classes themselves would need), measured the same way.

    python benchmarks/import_time.py            # 5 runs each, median and best
    python benchmarks/import_time.py --runs 10

Each run is a new interpreter, so nothing is cached in the process; the operating system's file cache
is warm after the first run. Also prints the slowest modules that one ``-X importtime`` run of the
package imports directly.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    # What registering the configs needs; the models go in as entries imported on first use.
    "from transformers import AutoConfig": [sys.executable, "-c", "from transformers import AutoConfig"],
    # What registering the model classes themselves would need: PreTrainedModel's module.
    "import transformers.modeling_utils": [sys.executable, "-c", "import transformers.modeling_utils"],
    "import hf_mmfusion": [sys.executable, "-c", "import hf_mmfusion"],
    # What the `hf-mmfusion` console script runs (its argv[0] is the script's path).
    "hf-mmfusion --help": [sys.executable, "-c", "import sys; sys.argv = ['hf-mmfusion', '--help']; "
                           "from hf_mmfusion.commands import main; sys.exit(main(sys.argv[1:]))"],
}


def wall_time(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def slowest_modules(count: int) -> list[tuple[float, str]]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import hf_mmfusion"], capture_output=True,
                            text=True, check=True)
    rows = []
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]) / 1e6, parts[2].rstrip()))
    # -X importtime indents a module by two spaces per level below the import that pulled it in.
    children = [(t, name.strip()) for t, name in rows if (len(name) - len(name.lstrip())) // 2 == 1]
    return sorted(children, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=8, help="slowest top-level imports to list")
    args = parser.parse_args()
    for command in COMMANDS.values():
        wall_time(command)  # warm the file cache
    # Rounds alternate the commands, so a change of machine load touches all of them alike.
    results = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, cmd in COMMANDS.items():
            results[name].append(wall_time(cmd))
    torch_floor = statistics.median(results["import torch"])
    config_floor = statistics.median(results["from transformers import AutoConfig"])
    print("| command | median s | best s | vs import torch | vs from transformers import AutoConfig |")
    print("|---|---|---|---|---|")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"| {name} | {median:.2f} | {min(times):.2f} | {median / torch_floor:.2f}x | {median / config_floor:.2f}x |")
    print("\nslowest modules imported directly by `import hf_mmfusion` (cumulative s):")
    for seconds, name in slowest_modules(args.top):
        print(f"  {seconds:6.2f}  {name}")


if __name__ == "__main__":
    main()

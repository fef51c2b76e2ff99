"""``umedsam train``: fine-tune (Lite)MedSAM with the U-MedSAM loss (and optionally SAM).

Options come from the defaults, then ``--config FILE.yaml``, then one flag per config field
(``--optim.lr 1e-4``, ``--loss.terms dice bce``, ``--no-data.balanced``, ``--run.resume auto``).
For several processes, launch with ``torchrun --nproc_per_node N -m umedsam.cli.main train ...``.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

_NONE = ("none", "null")


def _maybe_none(parse: Callable[[str], Any], optional: bool) -> Callable[[str], Any]:
    def parse_value(text: str) -> Any:
        if optional and text.lower() in _NONE:
            return None
        return parse(text)

    parse_value.__name__ = getattr(parse, "__name__", "value")
    return parse_value


def _key_value(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER; got {text!r}")
    try:
        return name, float(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER; got {text!r}") from err


def _add_flag(parser: argparse._ActionsContainer, dotted: str, hint: Any, help_text: str) -> None:
    flag = "--" + dotted.replace("_", "-")
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        optional = type(None) in args
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    extra = " ('none' to unset)" if optional else ""
    common: dict[str, Any] = {"dest": dotted, "default": argparse.SUPPRESS, "help": help_text}
    if hint is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
    elif origin is tuple:
        args = typing.get_args(hint)
        item = args[0]
        nargs: Any = "+" if len(args) == 2 and args[1] is Ellipsis else len(args)
        common["help"] += extra
        parser.add_argument(
            flag,
            nargs=nargs,
            type=_maybe_none(item, optional),
            metavar=item.__name__.upper(),
            **common,
        )
    elif origin is dict:
        common["help"] += " (NAME=NUMBER ...)" + extra
        parser.add_argument(
            flag, nargs="+", type=_maybe_none(_key_value, optional), metavar="NAME=W", **common
        )
    else:
        common["help"] += extra
        parser.add_argument(
            flag, type=_maybe_none(hint, optional), metavar=hint.__name__.upper(), **common
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``umedsam train``: ``--config`` plus one flag per config field."""
    from umedsam.training.config import config_flags

    parser.add_argument(
        "--config", type=Path, help="YAML config (sections data/model/loss/optim/run)"
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as YAML and exit"
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for dotted, hint, help_text in config_flags():
        section = dotted.split(".")[0]
        if section not in groups:
            groups[section] = parser.add_argument_group(f"{section} options")
        _add_flag(groups[section], dotted, hint, help_text.replace("``", "'"))


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in vars(args).items():
        if "." not in key:
            continue
        if isinstance(value, list) and value and isinstance(value[0], tuple):
            value = dict(value)  # NAME=NUMBER pairs
        elif isinstance(value, list) and None in value:
            value = None  # '--data.modalities none'
        out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    """Resolve the config, train, and print where the checkpoints are; 2 on a config error."""
    from umedsam.errors import MissingExtraError, UmedsamError
    from umedsam.extras import import_optional
    from umedsam.training.config import load_config

    try:
        config = load_config(args.config, _overrides(args))
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        try:
            yaml = import_optional(
                "yaml", package="pyyaml", extra="train", purpose="umedsam train --print-config"
            )
        except MissingExtraError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(yaml.safe_dump(_plain(config.to_dict()), sort_keys=False), end="")
        return 0

    from umedsam.training.trainer import train

    bar: Any = None
    quiet = getattr(args, "quiet", False)
    if not quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=config.run.max_steps, unit="step", desc="train", file=sys.stderr)

    def progress(row: dict[str, Any]) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=row["epoch"], loss=f"{row['loss_total']:.4f}")

    try:
        result = train(config, progress=progress)
    except (UmedsamError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    if not quiet:
        best = "n/a" if result.best_metric is None else f"{result.best_metric:.4f}"
        rate = result.samples / result.train_seconds if result.train_seconds > 0 else float("nan")
        print(
            f"{result.steps} steps ({rate:.1f} samples/s); best metric {best}; "
            f"last: {result.last_checkpoint}; best: {result.best_checkpoint}"
        )
    return 0


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

"""``mitogan export``: the best trial of a search (or any trial) as a generator bundle."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="export a search's best generator as a bundle",
                       description="Write a generator bundle (safetensors weights, config, metrics, torch.export "
                                   "and TorchScript programs, model card, checksums) from a search's best trial, or "
                                   "from a training run or checkpoint. Files follow the umask.")
    p.add_argument("source", help="a search directory (from `mitogan search`) or a checkpoint.pt / run directory "
                                  "(from `mitogan train`)")
    p.add_argument("--out", default=None, help="bundle directory (default: SEARCH_DIR/best); must be new, empty or "
                                               "a bundle MitoGAN wrote, and not inside the run being exported")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing bundle at --out (only once the new one is complete)")
    p.add_argument("--trial", default=None, help="export this trial id instead of the best one")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="export a training run that was interrupted before its last step (refused without this; "
                        "the bundle then records the step it was exported at)")
    p.add_argument("--allow-copying", action="store_true",
                   help="export a generator whose metrics flag it as copying its training data (refused without "
                        "this; the bundle then records allow_copying: true)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from mitogan.errors import MitoganError

    from mitogan.export import export_bundle

    from mitogan.resolve import kind_of, wrong_input

    src = Path(args.source)
    kind = kind_of(src)
    if kind not in ("run", "checkpoint", "search"):
        raise wrong_input(src, kind, "exportable", option="SOURCE", command="mitogan export")
    ckpt = src if src.is_file() else src / "checkpoint.pt"
    if ckpt.is_file() and not (src / "search.json").exists():
        if not args.out:
            raise MitoganError("--out is required when exporting a training run or checkpoint")
        run_dir = ckpt.parent
        _check_out(Path(args.out), run_dir, inside_ok=False)
        _check_finished(ckpt, args)
        metrics = _last_metrics(run_dir / "metrics.jsonl")
        bundle = export_bundle(ckpt, args.out, metrics=metrics, source={"run_dir": str(run_dir.resolve())},
                               data=_data_info(run_dir / "data.json"), overwrite=args.overwrite,
                               allow_copying=args.allow_copying)
    else:
        from mitogan.cli import plugin

        export_search = plugin("export_search")  # the search layer's, when it is installed
        if export_search is None:
            raise MitoganError(f"{src}: exporting a search folder needs MitoGAN's search layer; install the "
                               f"project (make install) rather than the mitogan package alone")
        if args.out:
            _check_out(Path(args.out), src, inside_ok=True)
        bundle = export_search(src, out=args.out, trial_id=args.trial, overwrite=args.overwrite,
                               allow_copying=args.allow_copying)
    print(f"bundle: {bundle}")
    return 0


def _check_out(out, source, *, inside_ok: bool) -> None:
    """Refuse an --out that would replace the run/search being exported (or a folder holding it); a bundle
    inside a search folder (its ``best/``) is fine, one inside a run folder is not (re-exports would nest)."""
    from mitogan.errors import MitoganError

    out, source = out.resolve(), source.resolve()
    if out == source or source.is_relative_to(out):
        raise MitoganError(f"--out {out}: it is or holds the {source} being exported; choose another --out "
                           f"(nothing was changed)")
    if not inside_ok and out.is_relative_to(source):
        raise MitoganError(f"--out {out}: it is inside the run {source} being exported; choose a folder outside "
                           f"it (nothing was changed)")


def _check_finished(ckpt, args) -> None:
    """A run stopped before its last step (Ctrl-C, a killed job) is not exported as if it were finished: one
    line naming the --resume that finishes it, unless --allow-incomplete."""
    import shlex

    from mitogan.errors import MitoganError
    from mitogan.export import checked_checkpoint

    state = checked_checkpoint(ckpt)
    step, steps = int(state.get("step", 0)), (state.get("config") or {}).get("train.steps")
    if steps is None or step >= int(steps) or args.allow_incomplete:
        return
    resume = _data_info(ckpt.parent / "data.json").get("resume_command") or (
        f"mitogan train --out {shlex.quote(str(ckpt.parent))} --resume --config "
        f"{shlex.quote(str(ckpt.parent / 'config.yaml'))} --data TILES")
    raise MitoganError(f"{args.source}: the training run stopped at step {step} of {steps} (interrupted); finish "
                       f"it with `{resume}`, or export it as it is with --allow-incomplete")


def _data_info(path) -> dict:
    """The run's data.json (written by `mitogan train`): sources, intensity mapping, pixel size, split."""
    import json

    from mitogan.errors import InputError

    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise InputError(path, f"not valid JSON ({e}); delete it to export without data provenance") from None


def _last_metrics(path) -> dict:
    import json

    if not path.exists():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return {k: v for k, v in json.loads(lines[-1]).items() if isinstance(v, (int, float, str))} if lines else {}

# %% [markdown]
# # SaShiMi on spoken digits (FSDD, 8 kHz): likelihood and samples
#
# Trains :class:`ssmsignal.AudioGenerator` (SaShiMi, Goel et al. 2022; the arrangement the
# library ships, recorded as ``arrangement`` in the output) on the Free Spoken Digit Dataset's
# standard train split, unconditionally and conditioned on the digit, and reports:
#
# * test NLL in bits per sample against a mu-law unigram and a WaveNet-style causal CNN trained
#   with the same loop, crops, batches, validation recordings and time budget
#   (``wavenet_baseline.py``);
# * an S4Classifier trained on FSDD judging the generated audio: classifier-based Inception
#   Score, and for the conditional model how often the recognised digit is the asked one;
# * zero-shot rate change: the 8 kHz model scoring and generating 16 kHz audio with Δ halved.
#
# The work is split into stages ("lanes") that can run as separate processes on one GPU
# (``gpu_sashimi.sh`` runs the training lanes side by side, each with the same wall-clock
# budget ``--budget``, the estimators' ``max_time``), then ``judge`` merges them:
#
#     uncond   SaShiMi, unconditional (--n-layers pairs per tier), + 16 kHz scoring/samples
#     cond     SaShiMi conditioned on the digit
#     uncond8  SaShiMi, unconditional, 8 pairs per tier (the default depth)
#     wavenet  the WaveNet-style baseline
#     clf      the judging classifier (S4D, recordings normalised to unit RMS)
#     profile  training-step times of the three models alone + top operators
#     judge    Inception Scores; merges the lanes into results.json and samples.npz
#
# Every choice that is made (best epoch of every model) is made on the validation recordings
# that ``AudioGenerator.fit`` holds out of the training split; the test split only gets scored.
#
#     python examples/sashimi_fsdd.py --data .devdata/fsdd --out OUT --budget 270 --stage uncond
#     python examples/sashimi_fsdd.py --quick --out /tmp/q   # CPU smoke run, embedded slice
#     python examples/sashimi_fsdd.py --render OUT/samples.npz --out docs/samples
#
# Lane outputs (``<lane>.json``, ``<lane>.npz``, saved models) go to ``--work`` (default
# ``--out``); ``judge`` writes ``results.json`` and ``samples.npz`` to ``--out``.

# %%
import argparse
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sashimi_fsdd_report import (inception_score, judge, normalize,  # noqa: E402
                                 profile_training, render, save_json, save_npz, summary_lines)
from wavenet_baseline import WaveNet, train_wavenet  # noqa: E402

from ssmsignal import AudioGenerator, S4Classifier  # noqa: E402
from ssmsignal.datasets import load_fsdd  # noqa: E402
from ssmsignal.estimators._audio_data import recording_codes, train_batches  # noqa: E402
from ssmsignal.functional import resample  # noqa: E402
from ssmsignal.models._mulaw import mu_law_encode  # noqa: E402

DEFAULT_STAGES = "uncond,wavenet,cond,clf,judge"
# the judging classifier: the FSDD recipe of docs/results.md, issue 3 ("s4d_lp")
CLF_AUGMENT = {"crop": 0.1, "speed": 0.1, "lowpass": 0.5, "gain_db": 6, "snr_db": [20, 40]}


def log(*parts):
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


def unigram_bits(train, test):
    """Cross-entropy (bits/sample) of test codes under the train code histogram (+1 smoothing)."""
    counts = np.bincount(np.concatenate([mu_law_encode(w) for w in train]), minlength=256) + 1.0
    p = counts / counts.sum()
    test_codes = np.concatenate([mu_law_encode(w) for w in test])
    return float(-np.log2(p[test_codes]).mean()), float(-(p * np.log2(p)).sum())


def configure(args):
    model = dict(d_model=8 if args.quick else args.d_model, pool=(4, 4), layer=args.layer,
                 d_state=8 if args.quick else 64)
    if args.unet:
        model["unet"] = True  # otherwise the library's default arrangement
    common = dict(segment_length=4096, batch_size=32, lr=4e-3, wavenet_lr=2e-3,
                  validation_fraction=0.1, max_epochs=args.max_epochs, budget=args.budget,
                  n_uncond=64, n_cond_per_digit=5, seconds=1.0, n_16k=4,
                  wavenet=dict(channels=112, skip_channels=224, n_dilations=10, n_stacks=2),
                  clf=dict(layer="s4d", d_model=96, n_layers=4, d_state=64, dropout=0.15,
                           weight_decay=0.05, label_smoothing=0.1, lr=4e-3, batch_size=32,
                           augment=CLF_AUGMENT, max_epochs=300, max_time=args.clf_budget))
    if args.quick:  # CPU smoke run on the embedded slice: tiny everything, a few seconds
        common.update(segment_length=512, batch_size=8, n_uncond=3, n_cond_per_digit=1,
                      seconds=0.02, n_16k=1,
                      wavenet=dict(channels=8, skip_channels=16, n_dilations=4, n_stacks=1))
        common["clf"].update(d_model=8, n_layers=1, d_state=8, max_epochs=2, augment=None)
    return dict(common, model=model)


def fit_generator(ctx, tag, conditional, n_layers):
    """Fit one AudioGenerator lane; test NLL, samples (and the 16 kHz zero-shot for uncond)."""
    cfg, train_b, test_b, fs, res = ctx["cfg"], ctx["train_b"], ctx["test_b"], ctx["fs"], {}
    gen = AudioGenerator(sampling_rate=fs, **cfg["model"], n_layers=n_layers,
                         conditional=conditional, segment_length=cfg["segment_length"],
                         batch_size=cfg["batch_size"], lr=cfg["lr"],
                         validation_fraction=cfg["validation_fraction"],
                         max_epochs=cfg["max_epochs"], max_time=cfg["budget"],
                         device=ctx["device"], random_state=ctx["seed"], verbose=0)
    train, test = list(train_b.data), list(test_b.data)
    started = time.perf_counter()
    gen.fit(train, train_b.target if conditional else None)
    res["fit_seconds"] = time.perf_counter() - started
    res["arrangement"] = gen.module_.config.to_dict()  # unet, depth, widths: what was trained
    res.update(history_summary(gen.history_))
    res["params"] = sum(p.numel() for p in gen.module_.parameters())
    res["test_bits"] = -gen.score(test, test_b.target if conditional else None)
    log(tag, "test bits/sample", res["test_bits"], "epochs", res["epochs"])
    ctx["save"](res, {})  # kept should sampling run out of time
    gen.save(Path(ctx["work"]) / "models" / tag)
    samples = {}
    started = time.perf_counter()
    if conditional:
        asked = np.repeat(np.arange(10), cfg["n_cond_per_digit"])
        samples[tag] = gen.sample(len(asked), cfg["seconds"], random_state=ctx["seed"],
                                  labels=asked)
        samples[f"{tag}_asked"] = asked
    else:
        samples[tag] = gen.sample(cfg["n_uncond"], cfg["seconds"], random_state=ctx["seed"])
    res["sample_seconds"] = time.perf_counter() - started
    ctx["save"](res, samples)
    if not conditional and "rate" not in ctx["skip"]:
        up = [np.clip(resample(w, fs, 2 * fs), -1, 1) for w in test]
        res["test_16k_bits_dt_rescaled"] = -gen.score(up, sampling_rate=2 * fs)
        res["test_16k_bits_dt_unchanged"] = -gen.score(up, sampling_rate=fs)
        samples[f"{tag}_16k"] = gen.sample(cfg["n_16k"], cfg["seconds"],
                                           random_state=ctx["seed"], sampling_rate=2 * fs)
        log(tag, "16 kHz bits: dt rescaled", res["test_16k_bits_dt_rescaled"], "unchanged",
            res["test_16k_bits_dt_unchanged"])
    return res, samples


def history_summary(history):
    best = int(np.argmax([h["val_score"] for h in history]))
    return {"epochs": len(history), "history": history, "best_epoch": best,
            "best_val_bits": -history[best]["val_score"],
            "seconds_per_epoch": float(np.median([h["time"] for h in history[1:]]
                                                 or [history[0]["time"]]))}


def fit_wavenet(ctx):
    cfg = ctx["cfg"]
    torch.manual_seed(ctx["seed"])
    net = WaveNet(**cfg["wavenet"])
    started = time.perf_counter()
    history, bits = train_wavenet(net, list(ctx["train_b"].data), list(ctx["test_b"].data),
                                  cfg, torch.device(ctx["device"]), ctx["seed"])
    res = {"fit_seconds": time.perf_counter() - started, **history_summary(history),
           "params": sum(p.numel() for p in net.parameters()),
           "receptive_field": net.receptive_field, "arrangement": cfg["wavenet"],
           "test_bits": bits}
    log("wavenet test bits/sample", bits, "epochs", res["epochs"])
    return res, {}


def fit_classifier(ctx):
    cfg, train_b, test_b, fs = ctx["cfg"], ctx["train_b"], ctx["test_b"], ctx["fs"]
    started = time.perf_counter()
    clf = S4Classifier(**cfg["clf"], device=ctx["device"], random_state=ctx["seed"], verbose=0)
    clf.fit([normalize(w) for w in train_b.data], train_b.target, sampling_rate=fs)
    proba = clf.predict_proba([normalize(w) for w in test_b.data], sampling_rate=fs)
    res = {"fit_seconds": time.perf_counter() - started, "epochs": len(clf.history_),
           "test_accuracy": float(np.mean(clf.classes_[proba.argmax(1)] == test_b.target)),
           "is_real_test": inception_score(proba)}
    clf.save(Path(ctx["work"]) / "clf")
    log("classifier test accuracy", res["test_accuracy"], "IS real", res["is_real_test"])
    return res, {}


def run_profile(ctx):
    cfg, device = ctx["cfg"], torch.device(ctx["device"])
    codes = recording_codes(list(ctx["train_b"].data))
    batches = train_batches(codes, None, cfg["segment_length"], cfg["batch_size"],
                            torch.Generator().manual_seed(0))
    make = lambda n: AudioGenerator(**cfg["model"], n_layers=n)._build_module(None)  # noqa
    models = {f"sashimi_{ctx['n_layers']}pairs": make(ctx["n_layers"]),
              "sashimi_8pairs": make(8), "wavenet": WaveNet(**cfg["wavenet"])}
    return profile_training(models, batches, device, n_steps=4 if ctx["quick"] else 8), {}


def run_lane(ctx, lane):
    """Run one lane in this process; its JSON and samples go to ``work/<lane>.json|npz``."""
    work = Path(ctx["work"])
    res = {"lane": lane, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "device": torch.cuda.get_device_name() if ctx["device"] == "cuda" else "cpu",
           "argv": sys.argv[1:], "config": ctx["cfg"], "data": ctx["data"]}

    def save(part, samples):
        save_json(work / f"{lane}.json", {**res, **part})
        if samples:
            save_npz(work / f"{lane}.npz", rate=ctx["fs"], **samples)
    ctx["save"] = save
    jobs = {"uncond": lambda: fit_generator(ctx, "uncond", False, ctx["n_layers"]),
            "cond": lambda: fit_generator(ctx, "cond", True, ctx["n_layers"]),
            "uncond8": lambda: fit_generator(ctx, "uncond8", False, 8),
            "wavenet": lambda: fit_wavenet(ctx), "clf": lambda: fit_classifier(ctx),
            "profile": lambda: run_profile(ctx)}
    if lane == "uncond":  # the mu-law unigram baseline, reported with the unconditional lane
        res["unigram_test_bits"], res["unigram_train_entropy_bits"] = unigram_bits(
            ctx["train_b"].data, ctx["test_b"].data)
        log("unigram test bits/sample", res["unigram_test_bits"])
    started = time.perf_counter()
    try:
        part, samples = jobs[lane]()
    except Exception:  # keep going: one failed lane must not lose the others
        part, samples = {"error": traceback.format_exc()}, {}
        log(f"lane {lane} FAILED\n{part['error']}")
    part["lane_seconds"] = time.perf_counter() - started
    save(part, samples)


def main(argv=None):
    parser = argparse.ArgumentParser(description="SaShiMi on FSDD")
    parser.add_argument("--data", default=".devdata/fsdd", help="FSDD folder (wav files)")
    parser.add_argument("--out", default=os.environ.get("OUT", "sashimi_out"))
    parser.add_argument("--work", default=None, help="lane outputs and models (default --out)")
    parser.add_argument("--stage", default=DEFAULT_STAGES,
                        help=f"comma list of lanes to run in this process (default "
                             f"{DEFAULT_STAGES}; also uncond8, profile)")
    parser.add_argument("--budget", type=float, default=90.0,
                        help="training seconds per model (AudioGenerator max_time)")
    parser.add_argument("--clf-budget", type=float, default=120.0)
    parser.add_argument("--max-epochs", type=int, default=80, help="cap on the epoch plan")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2, help="pairs per tier (uncond, cond)")
    parser.add_argument("--layer", default="s4")
    parser.add_argument("--unet", action="store_true", help="the older U-Net arrangement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", default="", help="comma list: rate")
    parser.add_argument("--cuda-memory-fraction", type=float, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--render", default=None, metavar="NPZ",
                        help="only write wavs + PNGs from a samples.npz into --out")
    args = parser.parse_args(argv)
    if args.render:
        for stem in render(args.render, args.out):
            log("wrote", Path(args.out) / stem)
        return None
    if args.quick:
        args.budget, args.clf_budget, args.max_epochs = min(args.budget, 2.0), 2.0, 2
    out, work = Path(args.out), Path(args.work or args.out)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.cuda_memory_fraction and device == "cuda":
        torch.cuda.set_per_process_memory_fraction(args.cuda_memory_fraction)
    stages = [s for s in args.stage.split(",") if s]
    ctx = {"cfg": configure(args), "device": device, "seed": args.seed, "work": work,
           "n_layers": args.n_layers, "quick": args.quick, "skip": set(args.skip.split(","))}
    if any(s != "judge" for s in stages):
        root = None if args.quick else args.data
        ctx["train_b"], ctx["test_b"] = (load_fsdd(root, split="train"),
                                         load_fsdd(root, split="test"))
        test = ctx["test_b"].data
        ctx["fs"] = float(ctx["train_b"].sampling_rate)
        ctx["data"] = {"train": len(ctx["train_b"].data), "test": len(test), "rate": ctx["fs"],
                       "test_samples": int(sum(len(w) for w in test))}
        log("data", ctx["data"])
    for stage in stages:
        log("lane", stage)
        if stage == "judge":
            res = judge(work, out)
            print("\n".join(summary_lines(res)), flush=True)
        else:
            run_lane(ctx, stage)
    return None


if __name__ == "__main__":
    main()

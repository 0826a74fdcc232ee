# %% [markdown]
# # SaShiMi on spoken digits (FSDD, 8 kHz): likelihood, samples, speed
#
# Trains :class:`ssmsignal.AudioGenerator` (SaShiMi, Goel et al. 2022) on the Free Spoken Digit
# Dataset's standard train split, unconditionally and conditioned on the digit, and reports:
#
# * test NLL in bits per sample against a mu-law unigram and a WaveNet-style causal CNN trained
#   with the same loop, batches and time budget (``wavenet_baseline.py``);
# * an S4Classifier trained on FSDD judging the generated audio: classifier-based Inception
#   Score, and for the conditional model how often the recognised digit is the asked one;
# * zero-shot rate change: the 8 kHz model scoring and generating 16 kHz audio with Δ halved;
# * generation speed (recurrent step with CUDA graphs, eager step, naive convolution).
#
# Everything is time-budgeted (``--budget``, seconds of training per model) so that the whole
# script fits one call on the lent GPU. Usage::
#
#     python examples/sashimi_fsdd.py --data .devdata/fsdd --out $OUT --budget 90
#     python examples/sashimi_fsdd.py --quick          # a CPU smoke run on the embedded slice
#
# Outputs under ``--out``: ``results.json``, ``samples.npz`` (generated audio), ``log.txt``.

# %%
import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wavenet_baseline import WaveNet  # noqa: E402

from ssmsignal import AudioGenerator, S4Classifier  # noqa: E402
from ssmsignal.datasets import load_fsdd  # noqa: E402
from ssmsignal.estimators._audio_data import (eval_batches, masked_nll,  # noqa: E402
                                              mean_nll_bits, recording_codes, train_batches)
from ssmsignal.estimators._training import TrainConfig, train_module  # noqa: E402
from ssmsignal.functional import resample  # noqa: E402
from ssmsignal.models._mulaw import mu_law_encode  # noqa: E402


def log(*parts):
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


def save_json(path, obj):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)


def unigram_bits(train, test):
    """Cross-entropy (bits/sample) of test codes under the train code histogram (+1 smoothing)."""
    counts = np.bincount(np.concatenate([mu_law_encode(w) for w in train]), minlength=256) + 1.0
    p = counts / counts.sum()
    test_codes = np.concatenate([mu_law_encode(w) for w in test])
    return float(-np.log2(p[test_codes]).mean()), float(-(p * np.log2(p)).sum())


def seconds_per_epoch(module, codes, cfg, device):
    """Time a few training steps of ``module`` on real batches -> estimated epoch time."""
    batches = train_batches(codes, None, cfg["segment_length"], cfg["batch_size"],
                            torch.Generator().manual_seed(0))
    module = module.to(device).train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    times = []
    for i, (inp, tgt, mask, _) in enumerate(batches[:6]):
        batch = (inp.to(device), tgt.to(device), mask.to(device), None)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = masked_nll(module, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    per_step = float(np.median(times[2:])) if len(times) > 3 else times[-1]
    return per_step * len(batches) * 1.15  # + validation


def epochs_for(budget, module, codes, cfg, device):
    epoch = seconds_per_epoch(module, codes, cfg, device)
    n = int(max(1, min(200, budget // epoch)))
    log(f"  ~{epoch:.2f} s/epoch -> {n} epochs for {budget} s")
    return n


def split_like_generator(n, fraction, seed):
    """The train/validation split AudioGenerator.fit makes (same rng calls)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(fraction * n))
    return perm[n_val:], perm[:n_val]


def train_wavenet(train, test, cfg, epochs, device, seed):
    torch.manual_seed(seed)
    net = WaveNet(**cfg["wavenet"])
    codes = recording_codes(train)
    tr, va = split_like_generator(len(codes), cfg["validation_fraction"], seed)
    tr_codes = [codes[i] for i in tr]
    val_batches = eval_batches([codes[i] for i in va], None, cfg["batch_size"])

    def validate(module):
        bits = mean_nll_bits(module, val_batches, device)
        return {"val_loss": bits * math.log(2), "val_score": -bits}

    config = TrainConfig(max_epochs=epochs, lr=cfg["wavenet_lr"], weight_decay=0.0,
                         device=device, random_state=seed, verbose=0)
    result = train_module(net, masked_nll,
                          lambda g: train_batches(tr_codes, None, cfg["segment_length"],
                                                  cfg["batch_size"], g), config, validate)
    test_bits = mean_nll_bits(net, eval_batches(recording_codes(test), None,
                                                cfg["batch_size"]), device)
    return net, result.history, test_bits


def inception_score(proba):
    """exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016), from classifier probabilities."""
    proba = np.clip(proba, 1e-12, 1.0)
    marginal = proba.mean(axis=0, keepdims=True)
    return float(np.exp((proba * (np.log(proba) - np.log(marginal))).sum(axis=1).mean()))


# %%
def render(npz_path, folder, picks=(("uncond", 0), ("uncond", 1), ("cond", 0), ("cond", 9),
                                    ("cond", 21), ("uncond_16k", 0))):
    """Write a few generated clips as 16-bit wavs and spectrogram PNGs into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile

    data = np.load(npz_path)
    rate = float(data["rate"])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for key, index in picks:
        audio = data[key][index]
        fs = 2 * rate if key.endswith("16k") else rate
        tag = f"digit{int(data['cond_asked'][index])}" if key == "cond" else f"{index}"
        stem = f"sashimi_{key}_{tag}"
        tmp = folder / f".{stem}.wav.tmp"
        soundfile.write(str(tmp), audio, int(fs), subtype="PCM_16", format="WAV")
        os.replace(tmp, folder / f"{stem}.wav")
        fig, ax = plt.subplots(figsize=(4, 2), dpi=80)
        ax.specgram(audio, NFFT=256, Fs=fs, noverlap=192, cmap="magma")
        ax.set(xlabel="s", ylabel="Hz", title=f"{key} {tag} ({fs / 1000:g} kHz)")
        fig.tight_layout()
        fig.savefig(folder / f".{stem}.png.tmp.png")
        plt.close(fig)
        os.replace(folder / f".{stem}.png.tmp.png", folder / f"{stem}.png")
        log("wrote", folder / stem)


def configure(args):
    if args.quick:  # CPU smoke run on the embedded slice: tiny everything
        return dict(model=dict(d_model=8, n_layers=1, pool=(4, 4), layer="s4d", d_state=8),
                    wavenet=dict(channels=8, skip_channels=16, n_dilations=4, n_stacks=1),
                    segment_length=512, batch_size=8, lr=4e-3, wavenet_lr=2e-3,
                    validation_fraction=0.1, n_generate=4, seconds=0.05, speed_steps=32,
                    clf=dict(d_model=8, n_layers=1, max_epochs=1))
    return dict(model=dict(d_model=args.d_model, n_layers=args.n_layers, pool=(4, 4),
                           layer=args.layer, d_state=64),
                wavenet=dict(channels=112, skip_channels=224, n_dilations=10, n_stacks=2),
                segment_length=4096, batch_size=32, lr=4e-3, wavenet_lr=2e-3,
                validation_fraction=0.1, n_generate=32, seconds=1.0, speed_steps=4000,
                clf=dict(d_model=64, n_layers=4, max_epochs=args.clf_epochs))


def main(argv=None):
    parser = argparse.ArgumentParser(description="SaShiMi on FSDD")
    parser.add_argument("--data", default=".devdata/fsdd")
    parser.add_argument("--out", default=os.environ.get("OUT", "sashimi_out"))
    parser.add_argument("--budget", type=float, default=90.0, help="training seconds per model")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--layer", default="s4")
    parser.add_argument("--clf-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", default="", help="comma list: wavenet,cond,clf,speed")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--render", default=None, metavar="NPZ",
                        help="only write wavs + PNGs from a samples.npz into --out")
    args = parser.parse_args(argv)
    if args.render:
        return render(args.render, args.out)
    skip = set(filter(None, args.skip.split(",")))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = configure(args)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    seed = args.seed
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device":
           torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
           "config": {k: v for k, v in cfg.items()}, "argv": sys.argv[1:]}
    samples = {}
    root = None if args.quick else args.data
    train_b, test_b = load_fsdd(root, split="train"), load_fsdd(root, split="test")
    train, test = list(train_b.data), list(test_b.data)
    fs = float(train_b.sampling_rate)
    res["data"] = {"train": len(train), "test": len(test), "rate": fs,
                   "test_samples": int(sum(len(w) for w in test))}
    res["unigram_test_bits"], res["unigram_train_entropy_bits"] = unigram_bits(train, test)
    log("data", res["data"], "unigram", res["unigram_test_bits"])

    def stage(name, fn):
        if name in skip:
            return None
        started = time.perf_counter()
        try:
            value = fn()
        except Exception:  # keep going: one failed stage must not lose the others
            res[f"{name}_error"] = traceback.format_exc()
            log(f"stage {name} FAILED\n{res[name + '_error']}")
            value = None
        res[f"{name}_seconds"] = time.perf_counter() - started
        save_json(out / "results.json", res)
        return value

    def make_gen(conditional):
        return AudioGenerator(sampling_rate=fs, **cfg["model"], conditional=conditional,
                              segment_length=cfg["segment_length"], batch_size=cfg["batch_size"],
                              lr=cfg["lr"], validation_fraction=cfg["validation_fraction"],
                              device=str(device), random_state=seed, verbose=0)

    def fit_gen(conditional):
        gen = make_gen(conditional)
        probe = gen._build_module(None)  # conditioning adds a lookup: time the plain model
        gen.max_epochs = epochs_for(args.budget, probe, recording_codes(train), cfg, device)
        gen.fit(train, train_b.target if conditional else None)
        key = "cond" if conditional else "uncond"
        res[f"{key}_params"] = sum(p.numel() for p in gen.module_.parameters())
        res[f"{key}_epochs"] = len(gen.history_)
        res[f"{key}_history"] = gen.history_
        res[f"{key}_test_bits"] = -gen.score(test, test_b.target if conditional else None)
        log(key, "test bits/sample", res[f"{key}_test_bits"], "epochs", len(gen.history_))
        return gen

    gen = stage("uncond", lambda: fit_gen(False))
    if gen is not None:
        def rate_change():
            up = [np.clip(resample(w, fs, 2 * fs), -1, 1) for w in test]
            res["test_16k_bits_dt_rescaled"] = -gen.score(up, sampling_rate=2 * fs)
            res["test_16k_bits_dt_unchanged"] = -gen.score(up, sampling_rate=fs)
            samples["uncond_16k"] = gen.sample(2, cfg["seconds"], random_state=seed,
                                               sampling_rate=2 * fs)
        stage("rate", rate_change)
        samples["uncond"] = stage("sample_uncond", lambda: gen.sample(
            cfg["n_generate"], cfg["seconds"], random_state=seed))
    net = None
    if "wavenet" not in skip:
        def wavenet():
            probe = WaveNet(**cfg["wavenet"])
            epochs = epochs_for(args.budget, probe, recording_codes(train), cfg, device)
            net, hist, bits = train_wavenet(train, test, cfg, epochs, device, seed)
            res["wavenet_params"] = sum(p.numel() for p in net.parameters())
            res["wavenet_receptive_field"] = net.receptive_field
            res["wavenet_history"], res["wavenet_test_bits"], res["wavenet_epochs"] = \
                hist, bits, len(hist)
            log("wavenet test bits/sample", bits, "epochs", len(hist))
            return net
        net = stage("wavenet", wavenet)
    cgen = stage("cond", lambda: fit_gen(True))
    if cgen is not None:
        asked = np.repeat(np.arange(10), max(1, cfg["n_generate"] // 10))
        samples["cond"] = stage("sample_cond", lambda: cgen.sample(
            len(asked), cfg["seconds"], random_state=seed, labels=asked))
        samples["cond_asked"] = asked
    clf = stage("clf", lambda: S4Classifier(**cfg["clf"], batch_size=32, device=str(device),
                                            random_state=seed, verbose=0)
                .fit(train, train_b.target, sampling_rate=fs))
    if clf is not None:
        def judge():
            res["clf_test_accuracy"] = float(clf.score(test, test_b.target))
            res["is_real_test"] = inception_score(clf.predict_proba(test))
            if samples.get("uncond") is not None:
                res["is_uncond"] = inception_score(clf.predict_proba(list(samples["uncond"])))
            if samples.get("cond") is not None:
                proba = clf.predict_proba(list(samples["cond"]))
                res["is_cond"] = inception_score(proba)
                recognised = clf.classes_[proba.argmax(axis=1)]
                res["cond_asked_eq_recognised"] = float(np.mean(recognised == asked))
            log("classifier acc", res["clf_test_accuracy"], "IS real", res["is_real_test"],
                "uncond", res.get("is_uncond"), "cond", res.get("is_cond"),
                "cond acc", res.get("cond_asked_eq_recognised"))
        stage("judge", judge)
    if gen is not None and "speed" not in skip:
        from ssmsignal.kernels.bench.bench_generation import print_table, run_all

        rows = stage("speed", lambda: run_all(gen.module_, device, cfg["speed_steps"],
                                              200 if not args.quick else 8))
        res["speed"] = rows
        if rows:
            print_table(rows)
    np.savez_compressed(out / "samples.npz", rate=fs,
                        **{k: v for k, v in samples.items() if v is not None})
    save_json(out / "results.json", res)
    summary = {k: v for k, v in res.items() if k.endswith(("bits", "_accuracy", "recognised"))
               or k.startswith("is_")}
    log("SUMMARY", json.dumps(summary, indent=1))
    return res


if __name__ == "__main__":
    main()

"""Judging, merging and rendering for ``sashimi_fsdd.py`` (the FSDD generation example).

* :func:`judge`: the classifier trained by the ``clf`` stage scores every lane's generated
  clips (Inception Score; asked digit == recognised digit for conditional clips), and the
  lanes' JSON files and samples are merged into ``results.json`` and ``samples.npz``.
* :func:`profile_training`: training-step times of each model alone on the device (the lanes
  share one GPU, so their epoch times are contended) and the top operators of one SaShiMi step.
* :func:`render`: a few clips as 16-bit wavs and spectrogram PNGs (for ``docs/samples``).
"""
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from fsdd_digits import normalize  # the classifier's input convention (unit RMS)
from prepare_results_data import save_npz

LANES = ("uncond", "cond", "wavenet", "uncond8", "clf", "profile")


def save_json(path, obj):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)


def inception_score(proba):
    """exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016), from classifier probabilities."""
    proba = np.clip(proba, 1e-12, 1.0)
    marginal = proba.mean(axis=0, keepdims=True)
    return float(np.exp((proba * (np.log(proba) - np.log(marginal))).sum(axis=1).mean()))


def judge(work, out):
    """Merge ``work/<lane>.json|npz`` into ``out/results.json`` and ``out/samples.npz``."""
    from ssmsignal import S4Classifier

    work, out = Path(work), Path(out)
    res = {"lanes": {}}
    samples = {}
    for lane in LANES:
        if (work / f"{lane}.json").exists():
            res["lanes"][lane] = json.loads((work / f"{lane}.json").read_text())
        if (work / f"{lane}.npz").exists():
            with np.load(work / f"{lane}.npz") as data:
                samples.update({k: data[k] for k in data.files})
    if (work / "clf").exists():
        device = "cuda" if torch.cuda.is_available() else "cpu"
        clf = S4Classifier.load(work / "clf", device=device)
        scores = {}
        for key, audio in samples.items():
            if key.endswith(("_asked", "_16k")) or key == "rate":
                continue
            proba = clf.predict_proba([normalize(a) for a in audio],
                                      sampling_rate=float(samples["rate"]))
            row = {"clips": len(audio), "inception_score": inception_score(proba)}
            recognised = clf.classes_[proba.argmax(axis=1)]
            row["recognised_counts"] = np.bincount(recognised, minlength=10).tolist()
            if f"{key}_asked" in samples:
                asked = samples[f"{key}_asked"]
                row["asked_eq_recognised"] = float(np.mean(recognised == asked))
                row["confusion"] = [np.bincount(recognised[asked == d], minlength=10).tolist()
                                    for d in range(10)]  # rows: asked digit
            scores[key] = row
        res["judge"] = scores
    save_json(out / "results.json", res)
    if samples:
        save_npz(out / "samples.npz", **samples)
    return res


def summary_lines(res):
    """A short table of the merged results."""
    lanes = res.get("lanes", {})
    lines = []
    if "uncond" in lanes:
        lines.append(f"unigram test bits {lanes['uncond'].get('unigram_test_bits', 0):.3f}")
    for lane in ("uncond", "cond", "uncond8", "wavenet"):
        r = lanes.get(lane)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"{lane:8s} ERROR {r['error'].strip().splitlines()[-1]}")
            continue
        lines.append(f"{lane:8s} params {r.get('params', 0):>9,} epochs {r.get('epochs', 0):3d} "
                     f"s/epoch {r.get('seconds_per_epoch', 0):6.2f} best val bits "
                     f"{r.get('best_val_bits', float('nan')):.3f} test bits "
                     f"{r.get('test_bits', float('nan')):.3f}")
    u = lanes.get("uncond", {})
    if "test_16k_bits_dt_rescaled" in u:
        lines.append(f"16 kHz test bits: dt rescaled {u['test_16k_bits_dt_rescaled']:.3f}, "
                     f"unchanged {u['test_16k_bits_dt_unchanged']:.3f}")
    c = lanes.get("clf", {})
    if "test_accuracy" in c:
        lines.append(f"classifier test acc {c['test_accuracy']:.3f} IS real test "
                     f"{c['is_real_test']:.2f} (epochs {c.get('epochs')})")
    for key, row in res.get("judge", {}).items():
        lines.append(f"IS {key:8s} {row['inception_score']:.2f} ({row['clips']} clips)"
                     + (f" asked==recognised {row['asked_eq_recognised']:.3f}"
                        if "asked_eq_recognised" in row else ""))
    return lines


# %%
def profile_training(models, batches, device, n_steps=8):
    """Median seconds per training step of each ``name -> module`` (alone on ``device``),
    and the 12 operators with the most self device time in one step of the first model."""
    from torch.profiler import ProfilerActivity, profile

    from ssmsignal.estimators._audio_data import masked_nll
    from ssmsignal.estimators._training import _autocast, move_to_device

    def one_step(module, opt, batch):
        with _autocast(device, True):  # bfloat16 on CUDA, as the training loop
            loss = masked_nll(module, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    out = {"seconds_per_step": {}, "steps_per_epoch": len(batches)}
    batches = [move_to_device(b, device) for b in batches[:n_steps]]
    for i, (name, module) in enumerate(models.items()):
        module = module.to(device).train()
        opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
        times = []
        for batch in batches:
            sync()
            t0 = time.perf_counter()
            one_step(module, opt, batch)
            sync()
            times.append(time.perf_counter() - t0)
        out["seconds_per_step"][name] = float(np.median(times[len(times) // 2:]))
        if i == 0:
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                             if device.type == "cuda" else [])
            with profile(activities=acts) as prof:
                one_step(module, opt, batches[0])
                sync()
            key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
            rows = sorted(prof.key_averages(), key=lambda e: -getattr(e, key))[:12]
            out["top_ops"] = {"model": name, "sort": key, "rows": [
                (e.key, round(getattr(e, key) / 1e3, 3), e.count) for e in rows]}
        module.cpu()
    return out


# %%
def render(npz_path, folder, picks=(("uncond", 0), ("uncond", 1), ("cond", 0), ("cond", 3),
                                    ("cond", 7), ("uncond_16k", 0), ("uncond8", 0))):
    """Write a few generated clips as 16-bit wavs and spectrogram PNGs into ``folder``.

    ``picks`` are ``(key, n)``: clip ``n`` of ``key``, or for conditional keys (with a
    ``<key>_asked`` array) the first clip asked to say digit ``n``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile

    data = np.load(npz_path)
    rate = float(data["rate"])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for key, index in picks:
        if key not in data.files:
            continue
        tag = f"{index}"
        if key + "_asked" in data.files:
            tag, index = f"digit{index}", np.flatnonzero(data[key + "_asked"] == index)
            index = index[0] if len(index) else len(data[key])
        if index >= len(data[key]):
            continue
        audio = data[key][index]
        fs = 2 * rate if key.endswith("16k") else rate
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
        written.append(stem)
    return written

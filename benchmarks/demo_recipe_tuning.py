"""Demo editor recipe tuning (issue 15): VAE pre-training, latent cache, UNet training and RSE/wo-RSE
edits per sampler/decoding setting, outside Snakemake, in one process.

Run it ONLY on a tuning demo of another generator seed (e.g. `demo.seed: 11`, results up to
instructions/ and masks/), never on the default demo's test/holdout pairs. Each setting is
``decode:image_guidance:text_guidance[:steps[:timestep_spacing]]``
per setting and mode it prints the
median distance ratio and the share of pairs closer to their target (as metrics.json's edit_success).
``--fill`` replaces the target's zero pixels (the registration's out-of-view wedges) by the input's.
``--unet-file`` saves the trained EMA UNet, or, when it exists, loads it and only evaluates.

Usage: .venv/bin/python benchmarks/demo_recipe_tuning.py TUNING_RESULTS --eval-splits val,test,holdout [options]
Its outputs of 2026-12-03 are in benchmarks/RESULTS.md ("Demo editor recipe on a tuning demo").
"""
# ruff: noqa: E402
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from instructx2x.model.build import build_tiny, make_scheduler
from instructx2x.model.tokenizer import instruction_words
from instructx2x.training.data import load_image, read_instructions, augment
from instructx2x.training.latents import copy_rng
from instructx2x.training.prepare import pretrain_vae
from instructx2x.training.module import InstructPix2PixModule
from instructx2x.inference.rse import RegionSpecificEditPipeline
from instructx2x.inference.shards import load_operation_dicts, pair_seed
from instructx2x.masks import PseudoMasks
from instructx2x.core.images import read_gray
from instructx2x.evaluation.edit_success import distance_ratio
from instructx2x.core.config import validate_config
import yaml

ap = argparse.ArgumentParser()
ap.add_argument("results", type=Path)
ap.add_argument("--eval-splits", default="val")
ap.add_argument("--vae-ch", default="32,64,64")
ap.add_argument("--vae-steps", type=int, default=600)
ap.add_argument("--vae-lr", type=float, default=2e-3)
ap.add_argument("--vae-bs", type=int, default=8)
ap.add_argument("--unet-ch", default="32,64")
ap.add_argument("--steps", type=int, default=1500)
ap.add_argument("--lr", type=float, default=5e-4)
ap.add_argument("--bs", type=int, default=16)
ap.add_argument("--copies", type=int, default=4)
ap.add_argument("--ema", type=float, default=0.99)
ap.add_argument("--eval-at", default="")
ap.add_argument("--infer-steps", type=int, default=20)
ap.add_argument("--igs", type=float, default=1.5)
ap.add_argument("--gs", type=float, default=7.5)
ap.add_argument("--max-eval", type=int, default=40)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--res", type=int, default=128)
ap.add_argument("--save", default="")
ap.add_argument("--lc", type=int, default=4)
ap.add_argument("--groups", type=int, default=8)
ap.add_argument("--logvar", type=float, default=-8.0)
ap.add_argument("--vae-loss", default="l1")
ap.add_argument("--settings", default="plain:1.5:7.5,residual:1.5:7.5,residual:1.5:3,residual:1.5:1.5,plain:1.5:3")
ap.add_argument("--pred", default="sample")
ap.add_argument("--base", default="none")
ap.add_argument("--fill", action="store_true")
ap.add_argument("--unet-file", default="")
ap.add_argument("--zero-out", action="store_true")
ap.add_argument("--vae-cache", default="/tmp/i15/vaecache")
ap.add_argument("--max-train", type=int, default=0, help="train on the first N train pairs only (0: all)")
ap.add_argument("--text-pretrain", type=int, default=0, help="grounding pre-training steps of the text encoder")
ap.add_argument("--text-lr", type=float, default=1e-3)
ap.add_argument("--attn-all", action="store_true", help="cross-attention in every UNet block, not only the deepest")
ap.add_argument("--train-text", action="store_true", help="train the text encoder with the UNet")
ap.add_argument("--shuffle-ops", action="store_true", help="each step, the instruction's operations in a random order")
a = ap.parse_args()
torch.set_num_threads(a.threads)
T0 = time.time()
import logging  # noqa: E402
logging.basicConfig(level=logging.INFO, format="%(message)s")
R = a.res
cfg_all = validate_config(yaml.safe_load(open(ROOT / "config.yaml")))
tiny = dict(cfg_all["model"]["tiny"], vae_channels=[int(c) for c in a.vae_ch.split(",")],
            unet_channels=[int(c) for c in a.unet_ch.split(",")], sample_size=R, vae_latent_channels=a.lc, vae_logvar_init=a.logvar, norm_groups=a.groups)
df = read_instructions(a.results / "instructions" / "instructions.parquet", ["train", "val", "test", "holdout"])
train = df[df.split == "train"].reset_index(drop=True)
if a.max_train:
    train = train.head(a.max_train)
ev = df[df.split.isin(a.eval_splits.split(","))].reset_index(drop=True).head(a.max_eval)
print(f"train {len(train)} eval {len(ev)} ({a.eval_splits})", flush=True)
with tempfile.TemporaryDirectory() as tmp:
    comps = build_tiny(tiny, instruction_words(df["instruction"]), tmp, 1234)
paths = sorted(set(train.past_image) | set(train.current_image))
images = torch.stack([load_image(p, R) for p in paths])
t = time.time()
key = f"{a.results.name}_{a.vae_ch}_{a.lc}_{a.groups}_{a.vae_steps}_{a.vae_bs}_{a.vae_lr}_{a.vae_loss}_{a.logvar}_{R}"
cp = Path(a.vae_cache) / (key + ".pt")
if cp.exists():
    comps.vae.load_state_dict(torch.load(cp))
else:
    hist = pretrain_vae(comps.vae, images, a.vae_steps, a.vae_bs, a.vae_lr, tiny["vae_kl_weight"], 1234, rec_loss=a.vae_loss)
    cp.parent.mkdir(parents=True, exist_ok=True)
    torch.save(comps.vae.state_dict(), cp)
vae_s = time.time() - t
vae = comps.vae.eval()
with torch.no_grad():
    eimg = torch.stack([load_image(p, R) for p in sorted(set(ev.past_image))[:30]])
    rec = vae.decode(vae.encode(eimg).latent_dist.mode()).sample
    recon_mae = float(((rec.clamp(-1, 1) - eimg).abs() * 127.5).mean())
print(f"VAE {a.vae_ch} {a.vae_steps} steps {vae_s:.0f}s: recon MAE on eval images {recon_mae:.2f} grey levels", flush=True)

# latents of train copies
t = time.time()
aug = cfg_all["training"]["augment"]
rows = []
with torch.no_grad():
    for r in train.itertuples(index=False):
        past, cur = load_image(r.past_image, R), load_image(r.current_image, R)
        if a.fill:
            cur = torch.where(cur <= -1 + 1e-6, past, cur)
        ps, cs, ts = [past], [cur], [r.instruction]
        for c in range(1, a.copies):
            p2, c2, t2, _ = augment(past, cur, r.instruction, copy_rng(1234, r.pair_id, c), **aug)
            ps.append(p2)
            cs.append(c2)
            ts.append(t2)
        post = vae.encode(torch.stack(cs)).latent_dist
        cond = vae.encode(torch.stack(ps)).latent_dist.mode()
        for k in range(len(ts)):
            rows.append((post.mean[k], post.std[k], cond[k], ts[k]))
MEAN = torch.stack([x[0] for x in rows])
STD = torch.stack([x[1] for x in rows])
COND = torch.stack([x[2] for x in rows])
TXT = [x[3] for x in rows]
print(f"latents {MEAN.shape} {time.time()-t:.0f}s", flush=True)

if a.attn_all:
    from diffusers import UNet2DConditionModel
    u = comps.unet.config
    torch.manual_seed(1234)
    comps.unet = UNet2DConditionModel(
        sample_size=u.sample_size, in_channels=u.in_channels, out_channels=u.out_channels,
        block_out_channels=u.block_out_channels, layers_per_block=u.layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * len(u.block_out_channels),
        up_block_types=("CrossAttnUpBlock2D",) * len(u.block_out_channels),
        mid_block_type="UNetMidBlock2DCrossAttn", cross_attention_dim=u.cross_attention_dim,
        attention_head_dim=u.attention_head_dim, norm_num_groups=u.norm_num_groups)
if a.text_pretrain:
    from instructx2x.training.text_grounding import pretrain_text_encoder
    t = time.time()
    info = pretrain_text_encoder(comps.text_encoder, comps.tokenizer, train["instruction"], a.text_pretrain, a.text_lr, 1234)
    print(f"text grounding {info} {time.time()-t:.0f}s", flush=True)
sched = make_scheduler(a.pred)
mod = InstructPix2PixModule(comps.unet, comps.text_encoder, comps.tokenizer, sched, vae.config.scaling_factor,
                            lr=a.lr, ema_decay=a.ema, seed=1234, prediction_base=a.base)
if a.zero_out:
    torch.nn.init.zeros_(mod.unet.conv_out.weight)
    torch.nn.init.zeros_(mod.unet.conv_out.bias)
    from diffusers.training_utils import EMAModel
    mod.ema = EMAModel(mod.unet.parameters(), decay=a.ema, foreach=True)
params = list(mod.unet.parameters())
if a.train_text:
    comps.text_encoder.requires_grad_(True).train()
    params += list(comps.text_encoder.parameters())

    def encode_trainable(texts):
        ids = comps.tokenizer(list(texts), padding="max_length", max_length=comps.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids
        return comps.text_encoder(ids)[0]
    mod.encode_text = encode_trainable
opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=1e-2, foreach=True)
rng_ops = np.random.default_rng(0)


def shuffled(text):
    ops = text.split("; ")
    order = rng_ops.permutation(len(ops))
    out = "; ".join(ops[i] for i in order)
    return out[0].upper() + out[1:] if out else out
g = torch.Generator().manual_seed(0)
mp = a.results / "masks" / "pseudo_masks.npz"
masks = PseudoMasks.load(mp)
mcfg = cfg_all["masks"]
region = {k: mcfg[k] for k in ("restrict_laterality", "restrict_zone", "patient_left_on_image", "midline", "zones") if k in mcfg}


def evaluate(step):
    unet = mod.ema_unet()
    comps.text_encoder.eval()
    pipe = RegionSpecificEditPipeline(vae, comps.text_encoder, comps.tokenizer, unet, sched, pseudo_masks=masks,
                                      region_settings=region, prediction_base=a.base)
    SET = [tuple(x.split(":")) for x in a.settings.split(",")]
    res = {(st, mode): [] for st in SET for mode in ("rse", "wo_rse")}
    t = time.time()
    for r in ev.itertuples(index=False):
        img = read_gray(r.past_image)
        tgt = read_gray(r.current_image)
        if a.fill:
            tgt = np.where(tgt == 0, img, tgt)
        ops = load_operation_dicts(r.operations)
        s = pair_seed(r.pair_id, 1234)
        for (st, mode) in res:
            dec, igs, gs = st[:3]
            nst = int(st[3]) if len(st) > 3 else a.infer_steps
            from diffusers import DDIMScheduler
            pipe.scheduler = DDIMScheduler.from_config(sched.config, timestep_spacing=st[4] if len(st) > 4 else "leading")
            out = pipe(img, r.instruction, operations=ops, seed=s, rse=mode == "rse", steps=nst,
                       image_guidance_scale=float(igs), guidance_scale=float(gs), tau=0.1, t_rel=800, decode=dec)
            d = distance_ratio(out.edited, img, tgt, out.mask if mode == "rse" else None)
            res[(st, mode)].append(d["ratio"])
            if a.save and mode == "wo_rse":
                from PIL import Image
                Path(a.save).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.concatenate([img, out.edited, tgt], 1)).save(f"{a.save}/{step}_{r.pair_id}.png")
    inf_s = time.time() - t
    for st in SET:
        msg = [f"step {step} {':'.join(st):>20}"]
        for mode in ("rse", "wo_rse"):
            v = np.array(res[(st, mode)])
            v = v[np.isfinite(v)]
            msg.append(f"{mode}: median {np.median(v):.3f} closer {np.mean(v < 1):.0%}")
        print("  ".join(msg), flush=True)
    print(f"infer {inf_s/len(ev)/len(res):.2f}s/edit  elapsed {time.time()-T0:.0f}s", flush=True)


eval_at = {int(s) for s in a.eval_at.split(",") if s} | {a.steps}
t = time.time()
N = len(TXT)
if a.unet_file and Path(a.unet_file).exists():
    mod.unet.load_state_dict(torch.load(a.unet_file))
    from diffusers.training_utils import EMAModel
    mod.ema = EMAModel(mod.unet.parameters(), decay=a.ema, foreach=True)
    if os.environ.get("VIZ"):
        from PIL import Image
        from diffusers import DDIMScheduler
        pipe = RegionSpecificEditPipeline(vae, comps.text_encoder, comps.tokenizer, mod.ema_unet(), sched, pseudo_masks=masks,
                                          region_settings=region, prediction_base=a.base)
        pipe.scheduler = DDIMScheduler.from_config(sched.config, timestep_spacing="trailing")
        tiles = []
        for r in ev.head(8).itertuples(index=False):
            img = read_gray(r.past_image)
            tgt = read_gray(r.current_image)
            if a.fill:
                tgt = np.where(tgt == 0, img, tgt)
            out = pipe(img, r.instruction, operations=load_operation_dicts(r.operations), seed=pair_seed(r.pair_id, 1234),
                       rse=False, steps=5, image_guidance_scale=1.0, guidance_scale=float(os.environ.get("GS", "1")), decode="residual")
            d1 = np.clip(128 + 2 * (out.edited.astype(int) - img), 0, 255).astype(np.uint8)
            d2 = np.clip(128 + 2 * (tgt.astype(int) - img), 0, 255).astype(np.uint8)
            tiles.append(np.concatenate([img, out.edited, tgt, d1, d2], 1))
            print(r.instruction)
        Image.fromarray(np.concatenate(tiles, 0)).save(os.environ["VIZ"])
        sys.exit(0)
    evaluate("loaded")
    sys.exit(0)
for step in range(1, a.steps + 1):
    idx = torch.randint(N, (a.bs,), generator=g)
    texts = [TXT[i] for i in idx.tolist()]
    if a.shuffle_ops:
        texts = [shuffled(x[0].lower() + x[1:]) for x in texts]
    batch = {"mean": MEAN[idx], "std": STD[idx], "cond": COND[idx], "text": texts}
    loss = mod.loss(batch, torch.Generator().manual_seed(step))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    mod.ema.step(mod.unet.parameters())
    if step % 250 == 0:
        print(f"step {step} loss {loss.item():.4f} {time.time()-t:.0f}s", flush=True)
    if step in eval_at:
        print(f"train time to step {step}: {time.time()-t:.0f}s", flush=True)
        evaluate(step)
if a.unet_file:
    torch.save(mod.ema_unet().state_dict(), a.unet_file)
print(f"total {time.time()-T0:.0f}s")

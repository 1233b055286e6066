#!/usr/bin/env python3
"""Prints the table of scripts/gpu-check.sh: one row per `sdgen --profile --json` run.

    gpu_table.py --model DIR --gpu "NVIDIA H100 80GB HBM3" RUNS_DIR

RUNS_DIR holds, per run, NAME.request.json (what was asked: width, height, batch, steps, scheduler,
cfg; written by gpu-check.sh) and NAME.json (what sdgen --json wrote; absent when the run failed).
Rows come in the order of the request files' names.

Achieved TFLOP/s is the UNet's matrix work per call divided by the median step time. The work is
counted from the model's unet/config.json (diffusers' UNet2DConditionModel): 2 FLOPs per
multiply-add of every convolution and linear layer, and 4 * N_q * N_k * C per attention (QK^T and
PV); norms and elementwise ops are left out (well under 1% of the total). The guided batch is
twice the image batch when cfg > 1, as sdgen runs it. For SD 1.5 at 512x512 this gives the 1.607
TFLOP per guided step that tests/bench/ops_bench.cpp counts op by op. The step time includes the
scheduler update, so the rate is slightly understated.

The card's dense fp16 tensor rate (fp32 accumulation, no sparsity) comes from its name, or from
--peak-tflops (also $SDGEN_PEAK_TFLOPS) for a card not listed.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

# Dense fp16 tensor-core TFLOP/s with fp32 accumulation, from NVIDIA's data sheets (their
# "with sparsity" figures halved). The first substring found in the GPU's name wins.
DENSE_FP16_TFLOPS = [
    ("H100 PCIe", 756.5),
    ("H100 NVL", 835.5),
    ("H100", 989.4),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200 NVL", 835.5),
    ("H200", 989.4),  # SXM
    ("A100", 312.0),
]


def peak_tflops(gpu_name, override):
    if override:
        return float(override)
    for key, rate in DENSE_FP16_TFLOPS:
        if key in gpu_name:
            return rate
    return None


class UNetFlops:
    """Counts one UNet call's FLOPs, walking the blocks as diffusers' UNet2DConditionModel does."""

    def __init__(self, config, context_tokens):
        self.c = config
        self.context_tokens = context_tokens
        self.context_dim = config["cross_attention_dim"]
        self.flops = 0.0

    def conv(self, b, h, w, cin, cout, k, stride=1):
        ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1  # padding k // 2
        self.flops += 2.0 * b * ho * wo * cin * cout * k * k
        return ho, wo

    def linear(self, rows, k, n):
        self.flops += 2.0 * rows * k * n

    def attention(self, b, nq, nk, channels):
        self.flops += 4.0 * b * nq * nk * channels

    def resnet(self, b, h, w, cin, cout, temb_dim):
        self.linear(b, temb_dim, cout)  # time_emb_proj
        self.conv(b, h, w, cin, cout, 3)
        if cin != cout:
            self.conv(b, h, w, cin, cout, 1)  # conv_shortcut
        self.conv(b, h, w, cout, cout, 3)

    def transformer(self, b, h, w, c, layers):
        n = h * w
        self.linear(b * n, c, c)  # proj_in (a 1x1 conv or a linear: the same work)
        for _ in range(layers):
            self.linear(b * n, c, 3 * c)  # attn1 to_q, to_k, to_v
            self.attention(b, n, n, c)
            self.linear(b * n, c, c)  # attn1 to_out
            self.linear(b * n, c, c)  # attn2 to_q
            self.linear(b * self.context_tokens, self.context_dim, 2 * c)  # attn2 to_k, to_v
            self.attention(b, n, self.context_tokens, c)
            self.linear(b * n, c, c)  # attn2 to_out
            self.linear(b * n, c, 8 * c)  # ff GEGLU proj
            self.linear(b * n, 4 * c, c)  # ff out
        self.linear(b * n, c, c)  # proj_out

    def per_block(self, key, blocks):
        value = self.c.get(key, 1)
        return list(value) if isinstance(value, list) else [value] * blocks

    def count(self, batch, latent_h, latent_w):
        c = self.c
        channels = c["block_out_channels"]
        levels = len(channels)
        layers = self.per_block("layers_per_block", levels)
        depth = self.per_block("transformer_layers_per_block", levels)
        temb_dim = c.get("time_embedding_dim") or 4 * channels[0]
        self.flops = 0.0
        b, h, w = batch, latent_h, latent_w
        self.linear(b, channels[0], temb_dim)  # time_embedding.linear_1
        self.linear(b, temb_dim, temb_dim)  # time_embedding.linear_2
        self.conv(b, h, w, c["in_channels"], channels[0], c.get("conv_in_kernel", 3))
        skips = [(channels[0], h, w)]
        cin = channels[0]
        for i, block in enumerate(c["down_block_types"]):
            for _ in range(layers[i]):
                self.resnet(b, h, w, cin, channels[i], temb_dim)
                cin = channels[i]
                if "CrossAttn" in block:
                    self.transformer(b, h, w, cin, depth[i])
                skips.append((cin, h, w))
            if i < levels - 1:
                h, w = self.conv(b, h, w, cin, cin, 3, stride=2)  # Downsample2D
                skips.append((cin, h, w))
        self.resnet(b, h, w, cin, cin, temb_dim)  # mid block
        if "CrossAttn" in c.get("mid_block_type", "UNetMidBlock2DCrossAttn"):
            self.transformer(b, h, w, cin, depth[-1])
        self.resnet(b, h, w, cin, cin, temb_dim)
        up_channels = list(reversed(channels))
        up_layers = list(reversed(layers))
        up_depth = list(reversed(depth))
        for i, block in enumerate(c["up_block_types"]):
            for _ in range(up_layers[i] + 1):
                skip_c, h, w = skips.pop()
                self.resnet(b, h, w, cin + skip_c, up_channels[i], temb_dim)
                cin = up_channels[i]
                if "CrossAttn" in block:
                    self.transformer(b, h, w, cin, up_depth[i])
            if i < levels - 1:
                _, h, w = skips[-1]  # Upsample2D: nearest to the next skip's size, then a 3x3 conv
                self.conv(b, h, w, cin, cin, 3)
        self.conv(b, h, w, channels[0], c["out_channels"], c.get("conv_out_kernel", 3))
        return self.flops


def cell(value, digits):
    return "n/a" if value is None else f"{value:.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, help="folder of NAME.request.json and NAME.json files")
    parser.add_argument("--model", type=Path, required=True, help="the model folder the runs used")
    parser.add_argument("--gpu", default="", help="the GPU's name, as nvidia-smi prints it")
    parser.add_argument("--peak-tflops", default=os.environ.get("SDGEN_PEAK_TFLOPS"),
                        help="the card's dense fp16 TFLOP/s, for a card not in the list")
    args = parser.parse_args()

    unet = json.loads((args.model / "unet" / "config.json").read_text())
    text_config = args.model / "text_encoder" / "config.json"
    tokens = json.loads(text_config.read_text()).get("max_position_embeddings", 77) if text_config.exists() else 77
    counter = UNetFlops(unet, tokens)
    peak = peak_tflops(args.gpu, args.peak_tflops)

    rows = []
    for request_path in sorted(args.runs.glob("*.request.json")):
        name = request_path.name[: -len(".request.json")]
        request = json.loads(request_path.read_text())
        profile_path = args.runs / f"{name}.json"
        profile = json.loads(profile_path.read_text()) if profile_path.exists() else None
        rows.append((name, request, profile))
    if not rows:
        sys.exit(f"gpu_table: no *.request.json files in {args.runs}")
    # The allocator's and the driver's peaks, and the plan the run was made with (equal to the
    # allocator's when the plan is complete).
    memory_keys = sorted({k for _, _, p in rows if p for k in p
                          if (k.startswith("peak_device") or k == "planned_peak_bytes") and k.endswith("_bytes")})

    print(f"GPU: {args.gpu or 'unknown'}; dense fp16 rate: "
          + (f"{peak:g} TFLOP/s" if peak else "unknown (give --peak-tflops)"))
    columns = (["run", "size", "scheduler", "steps", "batch", "dtype", "UNet it/s", "s/image"]
               + [f"{k[:-len('_bytes')]} GB" for k in memory_keys]
               + ["load s", "text encode s", "denoise s", "VAE decode s", "PNG s",
                  "UNet TFLOP/call", "TFLOP/s", "% of dense fp16"])
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for name, r, p in rows:
        guided = 2 if r["cfg"] > 1 else 1
        flop = counter.count(guided * r["batch"], math.ceil(r["height"] / 8), math.ceil(r["width"] / 8))
        head = [name, f"{r['width']}x{r['height']}", r["scheduler"], str(r["steps"]), str(r["batch"]),
                r.get("dtype", "fp16")]
        if p is None:
            print("| " + " | ".join(head + ["failed"] + [""] * (len(columns) - len(head) - 1)) + " |")
            continue
        images = p["images"] or 1
        step = p["step_median_s"]
        achieved = flop / step / 1e12 if step > 0 else None
        values = head + [
            cell(p["unet_it_per_s"], 2),
            cell((p["total_s"] - p["model_load_s"]) / images, 3),
            *[cell(p[k] / 1e9 if k in p else None, 2) for k in memory_keys],
            cell(p["model_load_s"], 2),
            cell(p["text_encode_s"], 3),
            cell(sum(p["step_s"]), 3),
            cell(p["vae_decode_s"], 3),
            cell(p["png_write_s"], 3),
            cell(flop / 1e12, 3),
            cell(achieved, 1),
            cell(100 * achieved / peak if achieved and peak else None, 1),
        ]
        print("| " + " | ".join(values) + " |")


if __name__ == "__main__":
    main()

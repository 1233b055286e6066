// conv2d: out = (conv(x, w) + bias + add_per_channel[b] + residual) * output_scale, NHWC: one
// oneDNN convolution with bias, residual and scale fused, then one pass for add_per_channel.
//
// Why each piece is fused the way it is (oneDNN 2.6, measured on this machine; the implementation
// names are what oneDNN reports):
//  * weights must be in oneDNN's blocked layout: with plain OHWI weights oneDNN falls back to its
//    reference convolution, which took minutes for one [2, 64, 64, 320] 3x3 layer instead of
//    34 ms (fp32, brgconv:avx512_core) or 3.6 ms (bf16, brgconv:avx512_core_amx_bf16). Hence
//    prepare_weight; an unprepared weight is reordered into scratch on every call.
//  * add_per_channel (the ResNet time embedding, [B, Cout]) as a binary post-op broadcast over
//    H and W is not supported by brgconv (oneDNN picks gemm:jit in fp32 and ref:any in bf16).
//    Running the batch image by image with bias + add_per_channel[b] as each image's bias keeps
//    brgconv but costs 9-27% on the 16x16 and 8x8 levels (fewer rows per run: [2, 16, 16, 2560]
//    -> 1280 took 126 ms instead of 115 in fp32, [2, 8, 8, 2560] 7.7 ms instead of 6.1 in bf16).
//    So it is one more pass over out after the whole-batch convolution instead: 0.6 ms at
//    [2, 64, 64, 320] (10 MB), about 0.1 ms at 16x16; a net gain of ~17 ms (fp32) and ~7 ms (bf16)
//    per UNet step.
//  * residual: a sum post-op (after copying the residual into out) keeps brgconv; a full-tensor
//    binary post-op reads the residual in place but moves to oneDNN's older jit kernels. The two
//    measured within 3% of each other at every UNet level, fp32 and bf16 (e.g. [2, 64, 64, 320]:
//    36.1 / 34.8 ms fp32, 4.02 / 4.15 ms bf16), so the convolution stays on brgconv.
//  * output_scale: an eltwise "linear" post-op, last.
// BF16 mode: x is rounded to a bf16 copy in scratch first (oneDNN 2.6 has no fp32-source /
// bf16-weight convolution); out stays fp32.
#include <cstring>

#include "kernels/cpu/cpu_ops.hpp"

namespace sdgen::cpu {

namespace {

dnnl::memory::desc nhwc(std::int64_t b, std::int64_t c, std::int64_t h, std::int64_t w, dnnl_dt dt) {
  return dnnl::memory::desc({b, c, h, w}, dt, dnnl::memory::format_tag::nhwc);
}

}  // namespace

dnnl::memory::desc conv_weight_layout(Context& ctx, const Shape& ohwi) {
  const std::int64_t cout = ohwi[0], kh = ohwi[1], kw = ohwi[2], cin = ohwi[3];
  const dnnl_dt cdt = ctx.compute_dt();
  const Primitive& p = ctx.primitive(cat("conv-layout ", ohwi.str(), " ", static_cast<int>(cdt)), [&] {
    // A 64x64 image with "same" padding: the UNet's largest level at 512x512, where most of the
    // convolution work is.
    constexpr std::int64_t kSide = 64;
    const dnnl::memory::desc src = nhwc(1, cin, kSide, kSide, cdt);
    const dnnl::memory::desc dst = nhwc(1, cout, kSide - kh + 1 + 2 * (kh / 2), kSide - kw + 1 + 2 * (kw / 2), dnnl_dt::f32);
    const dnnl::memory::desc wei({cout, cin, kh, kw}, cdt, dnnl::memory::format_tag::any);
    dnnl::convolution_forward::primitive_desc pd(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src,
                                        wei, dst, {1, 1}, {kh / 2, kw / 2}, {kh / 2, kw / 2}),
        ctx.engine);
    return Primitive{dnnl::primitive(), pd.weights_desc(), {}, pd.impl_info_str()};
  });
  return p.weights;
}

void conv2d(Context& ctx, const Conv2dGeometry& g, const Tensor& x, const Tensor& w, const Tensor& out,
            const Conv2dArgs& args) {
  const dnnl_dt cdt = ctx.compute_dt();

  // The source, in the compute dtype.
  const dnnl::memory::desc x_desc = nhwc(g.batch, g.cin, g.h, g.w, dnnl_dt::f32);
  dnnl::memory::desc src_desc = x_desc;
  const void* src = x.data;
  if (cdt != dnnl_dt::f32) {
    src_desc = nhwc(g.batch, g.cin, g.h, g.w, cdt);
    void* copy = ctx.scratch(Scratch::Source, src_desc.get_size());
    ctx.reorder(x_desc, x.data, src_desc, copy);
    src = copy;
  }
  const dnnl::memory::desc dst_desc = nhwc(g.batch, g.cout, g.ho, g.wo, dnnl_dt::f32);
  const dnnl::memory::desc bias_desc({g.cout}, dnnl_dt::f32, dnnl::memory::format_tag::a);

  const std::string key = cat("conv ", desc_key(src_desc), desc_key(dst_desc), " k", g.kh, "x", g.kw, " s", g.stride,
                              " p", g.padding, " b", args.bias != nullptr, " r", args.residual != nullptr, " o",
                              args.output_scale);
  const Primitive& p = ctx.primitive(key, [&] {
    dnnl::post_ops ops;
    if (args.residual) ops.append_sum(1.0f);
    if (args.output_scale != 1.0f) ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, args.output_scale, 0.0f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(ops);
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::memory::desc wei({g.cout, g.cin, g.kh, g.kw}, cdt, dnnl::memory::format_tag::any);
    const dnnl::memory::dims strides{g.stride, g.stride}, pad{g.padding, g.padding};
    const auto kind = dnnl::prop_kind::forward_inference;
    const auto alg = dnnl::algorithm::convolution_direct;
    const dnnl::convolution_forward::desc d =
        args.bias ? dnnl::convolution_forward::desc(kind, alg, src_desc, wei, bias_desc, dst_desc, strides, pad, pad)
                  : dnnl::convolution_forward::desc(kind, alg, src_desc, wei, dst_desc, strides, pad, pad);
    dnnl::convolution_forward::primitive_desc pd(d, attr, ctx.engine);
    return Primitive{dnnl::convolution_forward(pd), pd.weights_desc(), pd.scratchpad_desc(), pd.impl_info_str()};
  });

  auto* dst = static_cast<float*>(out.data);
  if (args.residual) {
    // The sum post-op adds what out holds.
    const auto* r = static_cast<const float*>(args.residual->data);
    parallel_for(ctx.threads, out.numel(), 1 << 16, [&](std::int64_t b, std::int64_t e) {
      std::memcpy(dst + b, r + b, static_cast<std::size_t>(e - b) * sizeof(float));
    });
  }
  std::unordered_map<int, dnnl::memory> run{{DNNL_ARG_SRC, wrap(src_desc, ctx, src)},
                                            {DNNL_ARG_WEIGHTS, ctx.weights_in(w, WeightUse::Conv2d, p.weights, "conv2d")},
                                            {DNNL_ARG_DST, wrap(dst_desc, ctx, dst)}};
  if (args.bias) run.emplace(DNNL_ARG_BIAS, wrap(bias_desc, ctx, args.bias->data));
  ctx.execute(p, std::move(run));

  if (args.add_per_channel) {
    // out[b, y, x, :] += add_per_channel[b, :] * output_scale (the scale applies to the whole sum).
    const auto* add = static_cast<const float*>(args.add_per_channel->data);
    const std::int64_t pixels = g.ho * g.wo, c = g.cout;
    const float scale = args.output_scale;
    parallel_for(ctx.threads, g.batch * pixels, std::max<std::int64_t>(1, (1 << 14) / c), [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) {
        const float* a = add + r / pixels * c;
        float* o = dst + r * c;
        for (std::int64_t i = 0; i < c; ++i) o[i] += a[i] * scale;
      }
    });
  }
}

}  // namespace sdgen::cpu

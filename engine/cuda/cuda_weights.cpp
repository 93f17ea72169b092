// Upload of the bound weights to the GPU as stored, and generation of the synthetic model in GPU
// memory (see cuda_weights.h).
#include "engine/cuda/cuda_weights.h"

#include <algorithm>
#include <array>
#include <string>
#include <thread>
#include <utility>

#include "engine/load_error.h"
#include "engine/synth.h"
#include "kernels/cuda/synth.h"
#include "kernels/synth_blocks.h"

namespace ds4 {
namespace {

constexpr uint64_t kTensorAlign = 256;

uint64_t align_up(uint64_t v) { return (v + kTensorAlign - 1) / kTensorAlign * kTensorAlign; }

uint64_t view_bytes(const TensorView& v) { return v.present() ? v.row_bytes * v.ne1 * v.ne2 : 0; }

using LayerPair = std::pair<TensorView LayerWeights::*, DeviceTensor DeviceLayerWeights::*>;
#define DS4_LAYER_PAIR(name) LayerPair{&LayerWeights::name, &DeviceLayerWeights::name}
constexpr std::array kLayerPairs = {
    DS4_LAYER_PAIR(hc_attn_fn), DS4_LAYER_PAIR(hc_attn_scale), DS4_LAYER_PAIR(hc_attn_base),
    DS4_LAYER_PAIR(attn_norm), DS4_LAYER_PAIR(attn_q_a), DS4_LAYER_PAIR(attn_q_a_norm), DS4_LAYER_PAIR(attn_q_b),
    DS4_LAYER_PAIR(attn_kv), DS4_LAYER_PAIR(attn_kv_a_norm), DS4_LAYER_PAIR(attn_sinks),
    DS4_LAYER_PAIR(attn_output_a), DS4_LAYER_PAIR(attn_output_b),
    DS4_LAYER_PAIR(attn_compressor_ape), DS4_LAYER_PAIR(attn_compressor_kv), DS4_LAYER_PAIR(attn_compressor_gate),
    DS4_LAYER_PAIR(attn_compressor_norm), DS4_LAYER_PAIR(indexer_attn_q_b), DS4_LAYER_PAIR(indexer_proj),
    DS4_LAYER_PAIR(indexer_compressor_ape), DS4_LAYER_PAIR(indexer_compressor_kv),
    DS4_LAYER_PAIR(indexer_compressor_gate), DS4_LAYER_PAIR(indexer_compressor_norm),
    DS4_LAYER_PAIR(hc_ffn_fn), DS4_LAYER_PAIR(hc_ffn_scale), DS4_LAYER_PAIR(hc_ffn_base),
    DS4_LAYER_PAIR(ffn_norm), DS4_LAYER_PAIR(ffn_gate_inp), DS4_LAYER_PAIR(exp_probs_b),
    DS4_LAYER_PAIR(ffn_gate_tid2eid), DS4_LAYER_PAIR(ffn_gate_exps), DS4_LAYER_PAIR(ffn_up_exps),
    DS4_LAYER_PAIR(ffn_down_exps), DS4_LAYER_PAIR(ffn_gate_shexp), DS4_LAYER_PAIR(ffn_up_shexp),
    DS4_LAYER_PAIR(ffn_down_shexp),
};
#undef DS4_LAYER_PAIR

using GlobalPair = std::pair<TensorView Weights::*, DeviceTensor DeviceWeights::*>;
constexpr std::array kGlobalPairs = {
    GlobalPair{&Weights::token_embd, &DeviceWeights::token_embd},
    GlobalPair{&Weights::output, &DeviceWeights::output},
    GlobalPair{&Weights::output_norm, &DeviceWeights::output_norm},
    GlobalPair{&Weights::output_hc_fn, &DeviceWeights::output_hc_fn},
    GlobalPair{&Weights::output_hc_base, &DeviceWeights::output_hc_base},
    GlobalPair{&Weights::output_hc_scale, &DeviceWeights::output_hc_scale},
};

// Calls fn(host view, device view) for every tensor slot of the model.
template <typename Fn>
void for_each_slot(const Weights& w, DeviceWeights* d, Fn fn) {
  for (const auto& [host, dev] : kGlobalPairs) fn(w.*host, d ? &(d->*dev) : nullptr);
  for (size_t il = 0; il < w.layers.size(); ++il)
    for (const auto& [host, dev] : kLayerPairs) fn(w.layers[il].*host, d ? &(d->layers[il].*dev) : nullptr);
}

}  // namespace

uint64_t DeviceWeights::required_bytes(const Weights& w) {
  uint64_t total = 0;
  for_each_slot(w, nullptr, [&](const TensorView& v, DeviceTensor*) { total += align_up(view_bytes(v)); });
  return total;
}

DeviceWeights DeviceWeights::upload(const Weights& w, const Progress& progress) {
  DeviceWeights d;
  d.layers.resize(w.layers.size());
  const uint64_t total = required_bytes(w);
  d.buffer_.grow(total);
  uint8_t* base = d.buffer_.as<uint8_t>();
  uint64_t offset = 0;
  for_each_slot(w, &d, [&](const TensorView& v, DeviceTensor* t) {
    if (!v.present()) return;
    const uint64_t bytes = view_bytes(v);
    DS4_CUDA_CHECK(cudaMemcpy(base + offset, v.data, bytes, cudaMemcpyHostToDevice));
    *t = DeviceTensor{base + offset, v.type, v.ne0, v.ne1, v.ne2, v.row_bytes};
    offset += align_up(bytes);
    if (progress) progress(offset, total);
  });
  return d;
}

namespace {

constexpr uint64_t kStagingBytes = uint64_t(64) << 20;  // per pinned staging buffer (two of them)

// Per-tensor placement of a synthetic model: type, byte offset in the device buffer, bytes.
struct SynthPlacement {
  GgmlType type;
  uint64_t offset, bytes;
};

std::vector<SynthPlacement> place_synthetic(const std::vector<TensorSpec>& specs, QuantScheme scheme, uint64_t& total) {
  std::vector<SynthPlacement> out;
  total = 0;
  for (const TensorSpec& spec : specs) {
    const GgmlType type = tensor_type_for(spec, scheme);
    const auto nb = tensor_bytes(spec.dims, type);
    if (!nb)
      throw LoadError("tensor '" + spec.name + "': row width " + std::to_string(spec.dims[0]) + " is not a multiple of the " +
                      std::string(ggml_type_name(type)) + " block size");
    out.push_back({type, total, *nb});
    total += align_up(*nb);
  }
  return out;
}

// Two pinned host buffers: rows are encoded on the host into one while the other is copied up.
class PinnedStaging {
 public:
  PinnedStaging() {
    for (int i = 0; i < 2; ++i) {
      DS4_CUDA_CHECK(cudaMallocHost(&buf_[i], kStagingBytes));
      DS4_CUDA_CHECK(cudaEventCreateWithFlags(&done_[i], cudaEventDisableTiming));
    }
  }
  ~PinnedStaging() {
    for (int i = 0; i < 2; ++i) {
      cudaEventSynchronize(done_[i]);
      cudaEventDestroy(done_[i]);
      cudaFreeHost(buf_[i]);
    }
  }
  // The next free buffer (waits for its previous copy).
  uint8_t* next() {
    cur_ ^= 1;
    DS4_CUDA_CHECK(cudaEventSynchronize(done_[cur_]));
    return buf_[cur_];
  }
  void copy_up(uint8_t* dst, uint64_t bytes, cudaStream_t stream) {
    DS4_CUDA_CHECK(cudaMemcpyAsync(dst, buf_[cur_], bytes, cudaMemcpyHostToDevice, stream));
    DS4_CUDA_CHECK(cudaEventRecord(done_[cur_], stream));
  }

 private:
  uint8_t* buf_[2] = {};
  cudaEvent_t done_[2] = {};
  int cur_ = 0;
};

// Encodes a tensor on the host (synth_encode_rows on `threads` threads per chunk) into dst; dst's
// first row is the tensor's row first_row (a slice of it).
void encode_on_host(const TensorSpec& spec, const ModelConfig& c, GgmlType type, uint64_t seed, int threads,
                    PinnedStaging& staging, uint8_t* dst, cudaStream_t stream, uint64_t first_row) {
  const uint64_t rows = tensor_n_values(spec.dims) / spec.dims[0];
  const uint64_t row_bytes = *ggml_row_bytes(type, spec.dims[0]);
  if (row_bytes > kStagingBytes) throw LoadError("tensor '" + spec.name + "': a row exceeds the staging buffer");
  const uint64_t chunk_rows = kStagingBytes / row_bytes;
  for (uint64_t begin = 0; begin < rows; begin += chunk_rows) {
    const uint64_t end = std::min(rows, begin + chunk_rows);
    uint8_t* buf = staging.next();
    const uint64_t per = (end - begin + threads - 1) / threads;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      const uint64_t b = begin + t * per, e = std::min(end, b + per);
      if (b >= e) break;
      pool.emplace_back(synth_encode_rows, std::cref(spec), std::cref(c), type, seed, first_row + b, first_row + e,
                        buf + (b - begin) * row_bytes);
    }
    for (auto& th : pool) th.join();
    staging.copy_up(dst + begin * row_bytes, (end - begin) * row_bytes, stream);
  }
}

}  // namespace

const DeviceTensor* DeviceWeights::tensor_for(const TensorSpec& spec) const {
  Weights probe;  // marks the spec's slot, then finds the device member paired with it
  probe.layers.resize(layers.size());
  TensorView* slot = weight_slot(probe, spec);
  if (!slot) return nullptr;
  static const uint8_t kMarker = 0;
  slot->data = &kMarker;
  const DeviceTensor* found = nullptr;
  for_each_slot(probe, const_cast<DeviceWeights*>(this), [&](const TensorView& v, DeviceTensor* t) {
    if (v.data == &kMarker) found = t;
  });
  return found && found->present() ? found : nullptr;
}

uint64_t DeviceWeights::synthetic_bytes(const ModelConfig& config, QuantScheme scheme) {
  uint64_t total = 0;
  place_synthetic(model_tensor_specs(config), scheme, total);
  return total;
}

namespace {

// Generates every tensor of specs into one new device buffer (the synthetic bytes of
// engine/synth.h) and points slot_of(spec)'s view at it; first_rows[i] (when given) is the row of
// the full tensor where spec i's (sliced) rows start. Throws LoadError on a spec without a slot or
// when the device lacks the memory.
template <typename SlotOf>
void generate_synthetic(const std::vector<TensorSpec>& specs, const ModelConfig& c, QuantScheme scheme, uint64_t seed,
                        int threads, const DeviceWeights::Progress& progress, SlotOf slot_of, cuda::DeviceBuffer& buffer,
                        const std::vector<uint64_t>& first_rows = {}) {
  uint64_t total = 0;
  const std::vector<SynthPlacement> place = place_synthetic(specs, scheme, total);
  size_t free_bytes = 0, total_bytes = 0;
  DS4_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (total + (uint64_t(256) << 20) > free_bytes)
    throw LoadError("synthetic weights need " + std::to_string(total >> 20) + " MiB but the device has " +
                    std::to_string(free_bytes >> 20) + " MiB free");
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  buffer.grow(total);
  uint8_t* base = buffer.as<uint8_t>();
  cudaStream_t stream = nullptr;
  DS4_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    PinnedStaging staging;
    uint64_t done = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
      const TensorSpec& spec = specs[i];
      const SynthPlacement& p = place[i];
      TensorView* slot = slot_of(spec);
      if (!slot) throw LoadError("synthetic weights: tensor '" + spec.name + "' has no slot in the weights");
      uint8_t* dst = base + p.offset;
      const uint64_t first_row = first_rows.empty() ? 0 : first_rows[i];
      slot->data = dst, slot->type = p.type, slot->ne0 = spec.dims[0];
      slot->ne1 = spec.dims.size() > 1 ? spec.dims[1] : 1, slot->ne2 = spec.dims.size() > 2 ? spec.dims[2] : 1;
      slot->row_bytes = *ggml_row_bytes(p.type, spec.dims[0]);
      if (synth_direct_tensor(spec, p.type)) {
        cuda::SynthBlocksParams sp;
        sp.out = dst, sp.type = p.type, sp.scales = synth_block_scales(p.type, synth_direct_std(spec));
        sp.tensor_seed = synth_tensor_seed(seed, spec.name);
        sp.n_rows = tensor_n_values(spec.dims) / spec.dims[0], sp.blocks_per_row = spec.dims[0] / kQK_K;
        sp.first_row = first_row;
        cuda::synth_blocks(sp, stream);
      } else {
        encode_on_host(spec, c, p.type, seed, threads, staging, dst, stream, first_row);
      }
      done += p.bytes;
      if (progress) progress(done, total);
    }
    DS4_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  DS4_CUDA_CHECK(cudaStreamDestroy(stream));
}

DeviceTensor device_view(const TensorView& v) {
  return v.present() ? DeviceTensor{v.data, v.type, v.ne0, v.ne1, v.ne2, v.row_bytes} : DeviceTensor{};
}

// The device views of a host-side MtpWeights whose data pointers are device addresses.
void set_mtp_views(const MtpWeights& v, DeviceMtpWeights& d) {
  d.hc_head_base = device_view(v.hc_head_base), d.hc_head_fn = device_view(v.hc_head_fn);
  d.hc_head_scale = device_view(v.hc_head_scale), d.e_proj = device_view(v.e_proj), d.h_proj = device_view(v.h_proj);
  d.enorm = device_view(v.enorm), d.hnorm = device_view(v.hnorm), d.norm = device_view(v.norm);
  for (const auto& [host, dev] : kLayerPairs) d.block.*dev = device_view(v.block.*host);
}

// Narrows the routed-expert specs of the main layers to the shard's experts; returns per spec the
// first row of the full tensor its rows start at (0 for every other spec).
std::vector<uint64_t> slice_expert_specs(std::vector<TensorSpec>& specs, Weights& views, ExpertShard experts) {
  std::vector<uint64_t> first_rows(specs.size(), 0);
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorView* slot = weight_slot(views, specs[i]);
    const int il = specs[i].layer;
    if (!slot || il < 0 || il >= static_cast<int>(views.layers.size())) continue;
    const LayerWeights& l = views.layers[il];
    if (slot != &l.ffn_gate_exps && slot != &l.ffn_up_exps && slot != &l.ffn_down_exps) continue;
    if (specs[i].dims.size() != 3 || uint64_t(experts.first) + uint64_t(experts.count) > specs[i].dims[2])
      throw LoadError("synthetic weights: experts [" + std::to_string(experts.first) + ", " +
                      std::to_string(experts.first + experts.count) + ") are not a range of '" + specs[i].name + "'");
    first_rows[i] = uint64_t(experts.first) * specs[i].dims[1];
    specs[i].dims[2] = uint64_t(experts.count);
  }
  return first_rows;
}

}  // namespace

DeviceWeights DeviceWeights::synthesize(const ModelConfig& c, QuantScheme scheme, uint64_t seed, int threads,
                                        const Progress& progress, ExpertShard experts) {
  validate_config(c);
  DeviceWeights d;
  d.layers.resize(c.n_layer);
  Weights views;  // the same views bind_weights would make, pointing into device memory
  views.layers.resize(c.n_layer);
  std::vector<TensorSpec> specs = model_tensor_specs(c);
  const std::vector<uint64_t> first_rows =
      experts.count > 0 ? slice_expert_specs(specs, views, experts) : std::vector<uint64_t>{};
  generate_synthetic(specs, c, scheme, seed, threads, progress,
                     [&views](const TensorSpec& spec) { return weight_slot(views, spec); }, d.buffer_, first_rows);
  for_each_slot(views, &d, [](const TensorView& v, DeviceTensor* t) { *t = device_view(v); });
  return d;
}

DeviceMtpWeights DeviceMtpWeights::synthesize(const ModelConfig& c, QuantScheme scheme, uint64_t seed, int threads) {
  validate_config(c);
  DeviceMtpWeights d;
  MtpWeights views;
  generate_synthetic(mtp_tensor_specs(c), c, scheme, seed, threads, {},
                     [&views](const TensorSpec& spec) { return mtp_weight_slot(views, spec); }, d.buffer_);
  set_mtp_views(views, d);
  return d;
}

DeviceMtpWeights DeviceMtpWeights::upload(const MtpWeights& w) {
  const TensorView* heads[] = {&w.hc_head_base, &w.hc_head_fn, &w.hc_head_scale, &w.e_proj, &w.h_proj,
                               &w.enorm,        &w.hnorm,      &w.norm};
  std::vector<const TensorView*> all(std::begin(heads), std::end(heads));
  for (const auto& [host, dev] : kLayerPairs) all.push_back(&(w.block.*host));
  uint64_t total = 0;
  for (const TensorView* v : all) total += align_up(view_bytes(*v));
  DeviceMtpWeights d;
  d.buffer_.grow(total);
  MtpWeights views = w;  // the same geometry, data pointing into device memory
  uint8_t* base = d.buffer_.as<uint8_t>();
  uint64_t offset = 0;
  auto place = [&](TensorView& v) {
    if (!v.present()) return;
    const uint64_t bytes = view_bytes(v);
    DS4_CUDA_CHECK(cudaMemcpy(base + offset, v.data, bytes, cudaMemcpyHostToDevice));
    v.data = base + offset;
    offset += align_up(bytes);
  };
  for (TensorView* v : {&views.hc_head_base, &views.hc_head_fn, &views.hc_head_scale, &views.e_proj, &views.h_proj,
                        &views.enorm, &views.hnorm, &views.norm})
    place(*v);
  for (const auto& [host, dev] : kLayerPairs) place(views.block.*host);
  set_mtp_views(views, d);
  return d;
}

}  // namespace ds4

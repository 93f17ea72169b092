// Speculative-decoding verification (the standard rule of Leviathan et al. / Chen et al.): a draft
// token d proposed from a draft distribution q is accepted with probability min(1, p(d) / q(d)) under
// the target's sampling distribution p; on rejection the token is drawn from max(0, p - q)
// normalised; after k accepted drafts one more token is drawn from the target. The emitted tokens
// are then distributed exactly as the target's sampler would draw them. Greedy requests use point
// masses, which makes this exact-match acceptance. The random draws are counter-based on (seed,
// index of the token being decided, stream), so a request's result does not depend on the batch.
// Pure functions; called by scheduler/speculator.cpp and the tests.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "engine/sampler.h"

namespace ds4 {

// Independent uniform streams beside the sampler's own (sampling_uniform(seed, step)).
enum class SpecStream : uint64_t { kDraft = 1, kAccept = 2, kResidual = 3 };
// Uniform in [0, 1) for token index `step` of a request seeded with `seed`, in `stream`.
double speculative_uniform(uint64_t seed, uint64_t step, SpecStream stream);

// A distribution with all its mass on one token (greedy and forced drafts).
TokenDistribution point_mass(int32_t token);

struct DraftVerdict {
  bool accepted = false;
  int32_t token = -1;  // the draft when accepted, else the token drawn from the residual
};

// One draft: accept iff u_accept * q(draft) < p(draft); else draw from max(0, p - q) with u_residual
// (from p when that is empty, which only rounding can cause). q(draft) must be > 0.
DraftVerdict verify_draft(const TokenDistribution& p, const TokenDistribution& q, int32_t draft, double u_accept,
                          double u_residual);

// Uniform for draft position j (0-based) and stream; kBonus asks for the sampler's own draw.
using SpecUniform = std::function<double(int j, SpecStream stream)>;
constexpr SpecStream kBonusStream = static_cast<SpecStream>(0);

// A chain of drafts d[0..k) with draft distributions q[0..k) and target distributions p[0..k] (p[j]:
// the target's distribution of the token at draft j's position; p[k]: of the one after the last
// draft). Returns the emitted tokens: the accepted drafts, then the replacement of the first rejected
// one or, when all are accepted, a token drawn from p[k] with u(k, kBonusStream).
std::vector<int32_t> verify_chain(std::span<const TokenDistribution> p, std::span<const TokenDistribution> q,
                                  std::span<const int32_t> drafts, const SpecUniform& u);

}  // namespace ds4

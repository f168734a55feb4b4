// The samplers that hold frames for a later choice (see edge/sampler.h):
// top_confidence_diversity (D-SBAD's pool) and paced_confidence_diversity (one frame per slot
// of capture time). Internal to the samplers.
#pragma once

#include <memory>

#include "edge/sampler.h"

namespace sd {

// For valid options of the strategy each names.
std::unique_ptr<Sampler> MakePoolSampler(const SamplerOptions& options);
std::unique_ptr<Sampler> MakePacedSampler(const SamplerOptions& options);

}  // namespace sd

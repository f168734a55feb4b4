// What a frame looks like, cheaply, and a diverse subset of many frames by their looks: the
// server's long-term memory (docs/architecture.md, "Memory against forgetting") keeps the
// frames of every condition a camera has seen (dusk, rain, a moved camera) by choosing them
// with k-center over these embeddings, not by age.
#pragma once

#include <cstddef>
#include <vector>

#include <opencv2/core.hpp>

namespace sd {

// 16x12 thumbnail of the grey image (layout: where things are, a mirrored or shifted view)
// followed by the mean and standard deviation of each of B, G, R (lighting and colour: dusk,
// night, haze), all scaled to [0, 1]. kAppearanceDims floats; empty for an empty image.
constexpr int kAppearanceDims = 16 * 12 + 6;
std::vector<float> AppearanceEmbedding(const cv::Mat& bgr);

// Squared Euclidean distance; the shorter length when the two differ.
float SquaredDistance(const std::vector<float>& a, const std::vector<float>& b);

// Greedy k-center (the core-set of Sener and Savarese, 2018): up to k indices into `points`,
// each the point farthest from `covered` and from the points chosen before it, so every look
// among `points` ends up near a chosen one. Ties go to the lower index; an empty embedding is
// never chosen; without `covered` the first choice is the first non-empty point. Cost
// O(points x (covered + k) x dims).
std::vector<size_t> KCenterGreedy(const std::vector<const std::vector<float>*>& points,
                                  const std::vector<const std::vector<float>*>& covered, size_t k);

}  // namespace sd

#include "bench/update_replay.h"

#include "common/link/grpc_status.h"
#include "common/link/update_codec.h"
#include "server/device_trainer.h"
#include "server/update_encoder.h"
#include "streamdistill.pb.h"

namespace sd {

int64_t UpdateWireBytes(const ModelUpdate& update, int chunk_bytes) {
  int64_t bytes = 0;
  for (uint32_t i = 0; i < UpdateChunkCount(update, chunk_bytes); ++i) {
    streamdistill::v1::ServerMessage message;
    *message.mutable_update() = MakeUpdateChunk(update, i, chunk_bytes);
    bytes += static_cast<int64_t>(message.ByteSizeLong()) + kGrpcFramingBytes;
  }
  return bytes;
}

StatusOr<UpdateRunResult> ReplayUpdates(const std::string& start_weights, const std::vector<TrainingSample>& received,
                                        const UpdateRunOptions& options, const InferenceOptions& inference,
                                        const std::vector<LabelledFrame>& eval) {
  SD_ASSIGN_OR_RETURN(auto start, StudentModel::FromBytes(start_weights));
  RoundOptions round;
  round.iterations = options.iterations;
  round.replay_frames = options.replay_frames;
  round.min_validation_frames = 1;  // no validation frames: every round is published
  round.trainer = options.trainer;
  round.sparse_fraction = RoundSparseFraction(options.policy);
  SD_ASSIGN_OR_RETURN(auto trainer,
                      DeviceTrainer::Create("bench", start->architecture(), start_weights, /*initial_version=*/1,
                                            round, MakeUpdateEncoder(options.policy, start->TensorSizes())));
  UpdateRunResult result;
  std::vector<float> edge = start->FlatWeights();  // what the edge holds
  for (size_t received_count = options.round_every; received_count <= received.size();
       received_count += options.round_every) {
    const std::vector<TrainingSample> so_far(received.begin(), received.begin() + received_count);
    SD_ASSIGN_OR_RETURN(RoundResult r, trainer->RunRound(so_far, {}));
    if (!r.published) continue;
    const DeliveredUpdate& u = r.update;
    ModelUpdate update;  // as the server's stream would send it
    update.base_version = IsFullEncoding(u.encoding) ? 0 : r.version - 1;
    update.new_version = r.version;
    update.encoding = u.encoding;
    update.payload = u.payload;
    update.weights_checksum = WeightsChecksum(u.delivered);
    update.val_map50 = update.val_map50_previous = 0.5;  // the sizes of real values
    update.val_frames = 60;
    result.downlink_bytes += UpdateWireBytes(update, options.chunk_bytes);
    ++result.updates;
    // The edge's side: decode against what it holds; it must land on the server's weights.
    SD_ASSIGN_OR_RETURN(edge, DecodeUpdate(u.encoding, edge, u.payload, edge.size()));
    if (WeightsChecksum(edge) != WeightsChecksum(trainer->flat_weights()))
      return Status::Internal("edge and server weights differ after version " + std::to_string(r.version));
  }
  SD_RETURN_IF_ERROR(start->SetFlatWeights(edge));
  InferenceOptions options_eval = inference;
  options_eval.score_threshold = 0.01f;
  SD_ASSIGN_OR_RETURN(auto detector, start->MakeDetector(options_eval));
  SD_ASSIGN_OR_RETURN(EvalResult scored, EvaluateDetector(*detector, eval));
  result.map50 = scored.map50;
  result.map50_95 = scored.map50_95;
  return result;
}

}  // namespace sd

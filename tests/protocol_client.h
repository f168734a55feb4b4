// A raw EdgeLink client for tests: no edge code, just the wire protocol
// (proto/streamdistill.proto), with every blocking call bounded by a deadline.
#pragma once

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "streamdistill.grpc.pb.h"

namespace sd::testing {

constexpr auto kStreamDeadline = std::chrono::seconds(10);

inline std::string RealJpeg() {
  cv::Mat image(192, 256, CV_8UC3, cv::Scalar(40, 90, 140));
  cv::rectangle(image, cv::Rect(60, 40, 50, 110), cv::Scalar(220, 220, 220), cv::FILLED);
  cv::circle(image, cv::Point(180, 80), 25, cv::Scalar(10, 200, 30), cv::FILLED);
  std::vector<uchar> bytes;
  EXPECT_TRUE(cv::imencode(".jpg", image, bytes));
  return std::string(bytes.begin(), bytes.end());
}

inline streamdistill::v1::EdgeMessage HelloMessage(const std::string& architecture, const std::string& device,
                                                  const std::string& token) {
  streamdistill::v1::EdgeMessage m;
  auto* hello = m.mutable_hello();
  hello->set_device_id(device);
  hello->set_token(token);
  hello->set_architecture(architecture);
  hello->set_model_version(0);
  hello->set_software("server_protocol_test");
  return m;
}

inline streamdistill::v1::EdgeMessage FrameMessage(uint64_t sequence, const std::string& jpeg) {
  streamdistill::v1::EdgeMessage m;
  auto* frame = m.mutable_frame();
  frame->set_sequence(sequence);
  frame->set_frame_index(static_cast<int64_t>(sequence % 1000000) * 10);  // any sequence, no overflow
  frame->set_capture_time_s(static_cast<double>(sequence));
  frame->set_jpeg(jpeg);
  frame->set_source_width(256);
  frame->set_source_height(192);
  frame->set_image_score(0.5f);
  return m;
}

// One EdgeLink.Connect stream with a deadline: every blocking call on it is bounded.
struct Stream {
  explicit Stream(const std::shared_ptr<grpc::Channel>& channel,
                  std::chrono::seconds deadline = kStreamDeadline)
      : stub(streamdistill::v1::EdgeLink::NewStub(channel)) {
    context.set_deadline(std::chrono::system_clock::now() + deadline);
    rw = stub->Connect(&context);
  }
  bool Send(const streamdistill::v1::EdgeMessage& m) { return rw->Write(m); }
  // Next message, or false when the server ended the stream.
  bool Next(streamdistill::v1::ServerMessage* m) { return rw->Read(m); }
  // Half-closes, drains what is left and returns the final status.
  grpc::Status Close() {
    rw->WritesDone();
    streamdistill::v1::ServerMessage ignored;
    while (rw->Read(&ignored)) {
    }
    return rw->Finish();
  }
  // For streams the server ends by itself: drain and return the final status.
  grpc::Status End() {
    streamdistill::v1::ServerMessage ignored;
    while (rw->Read(&ignored)) {
    }
    return rw->Finish();
  }

  std::unique_ptr<streamdistill::v1::EdgeLink::Stub> stub;
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<streamdistill::v1::EdgeMessage, streamdistill::v1::ServerMessage>> rw;
};

inline std::shared_ptr<grpc::Channel> Plaintext(int port) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
}

// Sends the frame and returns its ack (skipping model update chunks, which a fresh device
// without published versions does not get anyway).
inline ::testing::AssertionResult SendFrame(Stream& s, uint64_t sequence, const std::string& jpeg,
                                     streamdistill::v1::FrameAck* ack) {
  if (!s.Send(FrameMessage(sequence, jpeg))) return ::testing::AssertionFailure() << "write of frame " << sequence << " failed";
  streamdistill::v1::ServerMessage m;
  while (s.Next(&m)) {
    if (m.kind_case() == streamdistill::v1::ServerMessage::kAck) {
      *ack = m.ack();
      if (ack->sequence() != sequence)
        return ::testing::AssertionFailure() << "ack for " << ack->sequence() << ", expected " << sequence;
      return ::testing::AssertionSuccess();
    }
  }
  grpc::Status status = s.rw->Finish();
  return ::testing::AssertionFailure() << "stream ended before the ack of frame " << sequence << ": "
                                       << status.error_code() << " " << status.error_message();
}

// The stream must end without a single server message, with `code`. If the server answers
// after all, the stream is half-closed so that the failure stays quick.
inline void ExpectNoStream(Stream& s, grpc::StatusCode code) {
  streamdistill::v1::ServerMessage m;
  if (s.Next(&m)) {
    ADD_FAILURE() << "the server answered: " << m.ShortDebugString();
    s.Close();
    return;
  }
  grpc::Status status = s.rw->Finish();
  EXPECT_EQ(status.error_code(), code) << status.error_message();
}

inline ::testing::AssertionResult ExpectWelcome(Stream& s, streamdistill::v1::Welcome* welcome = nullptr) {
  streamdistill::v1::ServerMessage m;
  if (!s.Next(&m)) {
    grpc::Status status = s.rw->Finish();
    return ::testing::AssertionFailure() << "stream ended before the welcome: " << status.error_code() << " "
                                         << status.error_message();
  }
  if (m.kind_case() != streamdistill::v1::ServerMessage::kWelcome)
    return ::testing::AssertionFailure() << "first server message is not a welcome: " << m.ShortDebugString();
  if (welcome) *welcome = m.welcome();
  return ::testing::AssertionSuccess();
}

}  // namespace sd::testing

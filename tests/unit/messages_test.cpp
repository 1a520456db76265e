// Control messages: Cereal round trips, and malformed or unexpected messages named by sender and
// type.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "runtime/wire.hpp"

namespace moe {

TEST(Messages, WorkHeaderRoundTrips) {
  WorkHeader h{9, 7, 3, -1, 1, true, {{0, 5}, {4, 2}}, {0.5f, 0.0f, 2.25f}};
  const auto back = decode_message<WorkHeader>(open_envelope(2, encode_message(h)));
  EXPECT_EQ(back.exchange, 9u);
  EXPECT_EQ(back.step, 7);
  EXPECT_EQ(back.moe_layer, 3);
  EXPECT_TRUE(back.lm_head);
  ASSERT_EQ(back.segments.size(), 2u);
  EXPECT_EQ(back.segments[1].expert, 4);
  EXPECT_EQ(back.segments[1].rows, 2);
  EXPECT_EQ(back.demand, (std::vector<float>{0.5f, 0.0f, 2.25f}));
}

TEST(Messages, WorkReplyCarriesResidency) {
  WorkReply r{4, 2, 1, 0, 10.0, 2.0, 1.0, {1, 0, 1}};
  const auto back = decode_message<WorkReply>(open_envelope(3, encode_message(r)));
  EXPECT_EQ(back.exchange, 4u);
  EXPECT_EQ(back.resident, (std::vector<uint8_t>{1, 0, 1}));
}

TEST(Messages, BestLogitCarriesAnyIdExactly) {
  // Ids past 2^24 have no exact float: the id travels as the int's bits.
  std::vector<float> block(3 * kBestLogitFloats);
  put_best_logit(block.data(), 2, {-1.5f, 16777217});
  const BestLogit back = best_logit_at(block.data(), 2);
  EXPECT_EQ(back.logit, -1.5f);
  EXPECT_EQ(back.id, 16777217);
}

TEST(Messages, UnexpectedTypeNamesSenderAndTypes) {
  const auto e = open_envelope(4, encode_message(Shutdown{}));
  try {
    decode_message<WorkReply>(e);
    FAIL();
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what())
                  .find("unexpected message from rank 4: got Shutdown, expected WorkReply"),
              std::string::npos);
  }
}

TEST(Messages, OtherProtocolVersionIsRejected) {
  std::string bytes = encode_message(Shutdown{});
  bytes[0] = 9;
  EXPECT_THROW(decode_message<Shutdown>(open_envelope(1, bytes)), Error);
}

TEST(Messages, TruncatedPayloadIsMalformed) {
  std::string bytes = encode_message(WorkHeader{0, 1, 2, -1, 0, false, {{0, 5}, {1, 6}}, {}});
  bytes.resize(bytes.size() - 6);
  try {
    decode_message<WorkHeader>(open_envelope(3, bytes));
    FAIL();
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("malformed WorkHeader message from rank 3"),
              std::string::npos);
  }
  EXPECT_THROW(open_envelope(3, "abc"), Error);
}

TEST(Messages, AProfileRequestAndResultCarryTheLoadTiming) {
  ProfileRequest request;
  request.token_counts = {1, 8};
  request.time_load = true;
  const auto r = decode_message<ProfileRequest>(open_envelope(1, encode_message(request)));
  EXPECT_TRUE(r.time_load);
  EXPECT_EQ(r.token_counts, (std::vector<int32_t>{1, 8}));
  ProfileResult result;
  result.rank = 2;
  result.median_us = {10, 20};
  result.load_us = 6543.5;
  const auto back = decode_message<ProfileResult>(open_envelope(2, encode_message(result)));
  EXPECT_EQ(back.median_us, result.median_us);
  EXPECT_DOUBLE_EQ(back.load_us, 6543.5);
}

// Found by tests/fuzz/fuzz_messages (under UBSan): an empty container's data pointer is null, and
// was passed to memcpy.
TEST(Messages, EmptyContainersRoundTrip) {
  ProfileRequest sent;
  sent.max_experts = 3;
  const auto back = decode_message<ProfileRequest>(open_envelope(1, encode_message(sent)));
  EXPECT_TRUE(back.token_counts.empty());
  EXPECT_EQ(back.max_experts, 3);
}

// Found by tests/fuzz/fuzz_messages: a container that claims more elements than the message has
// bytes was allocated before it was read (2^56 ExpertSegments: memory exhausted).
TEST(Messages, AClaimedSizeBeyondTheMessageIsMalformedNotAllocated) {
  std::string bytes = encode_message(WorkHeader{0, 1, 2, -1, 0, false, {{0, 5}}, {}});
  const uint64_t huge = uint64_t(1) << 56;
  // The segments' size tag: before the one segment (8 bytes) and the empty demand's size tag.
  const size_t at = bytes.size() - 8 - 2 * sizeof(uint64_t);
  std::memcpy(bytes.data() + at, &huge, sizeof(huge));
  try {
    decode_message<WorkHeader>(open_envelope(2, bytes));
    FAIL();
  } catch (const Error& err) {
    const std::string what = err.what();
    EXPECT_NE(what.find("malformed WorkHeader message from rank 2"), std::string::npos) << what;
    EXPECT_NE(what.find("claims 72057594037927936 elements"), std::string::npos) << what;
  }
}

}  // namespace moe

// Where rank 0's checked plan puts the dense FFN blocks and the lm_head's columns, and what it
// takes to go on after a lost rank.
#include "ranks/commands/run_options.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "runtime/error.hpp"

namespace moe {
namespace {

// switch-tiny: 4 + 4 blocks, sparse every other one (dense blocks 0, 2 of each stack), vocab 76.
RunOptions serving(const std::string& dense_ffn, const std::string& lm_head = "auto") {
  RunOptions o;
  o.model_dir = std::string(MOE_SOURCE_DIR) + "/configs/models/switch-tiny";
  o.serves = true;
  o.batch_size = 16;
  o.dense_ffn = dense_ffn;
  o.lm_head_on_experts = lm_head;
  return o;
}

RunPlan plan_of(const RunOptions& o, int ranks) {
  return check_run(o, load_run_config(o), ranks).plan;
}

}  // namespace

TEST(RunOptions, DenseFfnsGoRoundTheExpertRanksAsTold) {
  // Dense blocks in order: encoder 0, encoder 2, decoder 0, decoder 2; expert ranks 1 and 2.
  // By default the encoder's go round the expert ranks and the decoder's stay (-1).
  EXPECT_EQ(plan_of(serving("auto"), 3).dense_ranks, (std::vector<int>{1, 2, -1, -1}));
  EXPECT_EQ(plan_of(serving("split"), 3).dense_ranks, (std::vector<int>{1, 2, -1, -1}));
  EXPECT_EQ(plan_of(serving("split"), 2).dense_ranks, (std::vector<int>{1, 1, -1, -1}));
  EXPECT_EQ(plan_of(serving("experts"), 3).dense_ranks, (std::vector<int>{1, 2, 1, 2}));
  EXPECT_TRUE(plan_of(serving("attention"), 3).dense_ranks.empty());
  EXPECT_TRUE(plan_of(serving("auto"), 1).dense_ranks.empty());
  EXPECT_EQ(plan_of(serving("attention"), 3).dense_rank(0), -1);
  EXPECT_EQ(plan_of(serving("auto"), 3).dense_rank(7), -1);  // no such block
}

TEST(RunOptions, LmHeadColumnsCoverTheVocabularyOnceInRankOrder) {
  for (const char* share : {"0", "0.25", "0.5", "0.97"})
    for (int attention : {1, 2}) {
      RunOptions o = serving("auto", share);
      o.attention_ranks = attention;
      const RunPlan plan = plan_of(o, 4);
      const int kept = plan.lm_head_columns(0, 76).second;
      EXPECT_EQ(kept, 76 - int(std::lround(std::stod(share) * 76))) << share;
      EXPECT_EQ(plan.lm_head_columns(attention - 1, 76), std::make_pair(0, kept));
      int next = kept;
      for (int r = attention; r < 4; ++r) {
        const auto [first, last] = plan.lm_head_columns(r, 76);
        EXPECT_EQ(first, next) << "rank " << r << " share " << share;
        EXPECT_LE(first, last);
        next = last;
      }
      EXPECT_EQ(next, 76) << share;
    }
  EXPECT_EQ(plan_of(serving("auto"), 1).lm_head_on_experts, 0);  // alone: no expert ranks
}

TEST(RunOptions, BadLmHeadShareIsRefusedNamingTheOption) {
  for (const char* bad : {"1", "-0.1", "half", "0.5x", ""}) {
    try {
      plan_of(serving("auto", bad), 2);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--lm-head-on-experts"), std::string::npos) << e.what();
    }
  }
  RunOptions forward = serving("auto", "0.5");
  forward.serves = false;
  EXPECT_THROW(plan_of(forward, 2), Error);
}

namespace {

// The message of the error plan_of throws, or "" where it accepts.
std::string refusal(const RunOptions& o, int ranks) {
  try {
    plan_of(o, ranks);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Open MPI's mpirun puts these in every rank's environment (the second with --enable-recovery).
struct LaunchedByMpirun {
  explicit LaunchedByMpirun(bool recovery) {
    setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
    if (recovery) setenv("OMPI_MCA_orte_enable_recovery", "1", 1);
  }
  ~LaunchedByMpirun() {
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("OMPI_MCA_orte_enable_recovery");
  }
};

}  // namespace

TEST(RunOptions, GoingOnAfterALostRankKeepsWhatHasNoReplicaOnTheAttentionRanks) {
  RunOptions o = serving("auto");
  o.on_rank_failure = "continue";
  const RunPlan plan = plan_of(o, 3);
  EXPECT_TRUE(plan.continue_on_rank_failure);
  EXPECT_TRUE(plan.dense_ranks.empty());  // a dense FFN has one rank: not on the expert ranks
  EXPECT_EQ(plan.lm_head_on_experts, 0);  // nor a part of the lm_head
  EXPECT_FALSE(plan_of(serving("auto"), 3).continue_on_rank_failure);
  o.dense_ffn = "experts";
  EXPECT_NE(refusal(o, 3).find("--dense-ffn experts gives each dense FFN one expert rank"),
            std::string::npos);
  o.dense_ffn = "auto";
  o.lm_head_on_experts = "0.5";
  EXPECT_NE(refusal(o, 3).find("--lm-head-on-experts 0.5 gives each expert rank a part"),
            std::string::npos);
}

TEST(RunOptions, GoingOnAfterALostRankIsRefusedWhereItCannotWork) {
  RunOptions o = serving("auto");
  o.on_rank_failure = "retry";
  EXPECT_NE(refusal(o, 3).find("--on-rank-failure must be abort or continue, not 'retry'"),
            std::string::npos);
  o.on_rank_failure = "continue";
  o.serves = false;  // moe forward, moe profile
  EXPECT_NE(refusal(o, 3).find("--on-rank-failure continue is for moe generate"),
            std::string::npos);
  o.serves = true;
  {
    const LaunchedByMpirun without_recovery(false);
    EXPECT_NE(refusal(o, 3).find("start it with mpirun --enable-recovery"), std::string::npos);
    EXPECT_EQ(refusal(o, 1), "");  // alone: nothing to lose
  }
  {
    const LaunchedByMpirun with_recovery(true);
    EXPECT_EQ(refusal(o, 3), "");
  }
}

}  // namespace moe

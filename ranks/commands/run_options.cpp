#include "ranks/commands/run_options.hpp"

#include <boost/program_options.hpp>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "model/resident_experts.hpp"
#include "model/weights.hpp"
#include "ranks/commands/command_line.hpp"
#include "router/memory_plan.hpp"
#include "router/policy_factory.hpp"
#include "router/residency.hpp"
#include "runtime/atomic_file.hpp"
#include "runtime/cpu/weight_matrix.hpp"
#include "runtime/device.hpp"
#include "runtime/error.hpp"
#include "runtime/mpi/transport_factory.hpp"

namespace moe {
namespace po = boost::program_options;

namespace {

// The expert map of the run: the given one (or round-robin), joined with the extra maps' experts.
// M: the first rank that holds experts.
ExpertMap run_expert_map(const RunOptions& o, const ModelConfig& c, int N, int M) {
  const int layers = count_moe_layers(c);
  ExpertMap map = o.expert_map_path.empty()
                      ? round_robin_expert_map(layers, c.num_experts, M, N)
                      : load_expert_map(o.expert_map_path, layers, c.num_experts, M, N);
  for (const auto& path : o.extra_expert_maps) {  // the union, for runs that switch maps
    const ExpertMap extra = load_expert_map(path, layers, c.num_experts, M, N);
    for (int l = 0; l < layers; ++l)
      for (int e = 0; e < c.num_experts; ++e)
        for (int r : extra.ranks_of(l, e))
          if (!map.holds(r, l, e)) map.replicas[l][e].push_back(r);
  }
  if (o.memory_per_rank_bytes > 0) {
    std::vector<size_t> budget(N, o.memory_per_rank_bytes);
    std::fill(budget.begin(), budget.begin() + M, 0);
    check_expert_memory(map, size_t(2) * c.d_model * c.d_ff * sizeof(float), budget,
                        o.expert_map_path.empty() ? "round-robin expert map" : o.expert_map_path);
  }
  return map;
}

// Where each dense FFN block runs under mpirun. `split` (the default): the encoder's on the expert
// ranks (round-robin), the decoder's on the attention rank. In the encoder an attention rank's side
// of a block is 4d² multiply-adds per token against an FFN's 8d² (d_ff = 4d), so the expert ranks
// take the FFNs; in a decode step the expert ranks already spend most of a lane's turn on its
// sparse layer (at a few rows per expert, bound by reading every expert's weights), and the
// attention rank takes the dense FFNs between them to keep the turns even. Measured on the
// switch-base-8 shape against every dense FFN on the expert ranks: 4-10% more tokens/s at batch
// 8 and 16, within the noise at batch 64 (docs/BENCHMARKS.md, section 3).
// A dense FFN has one rank, no replica: a run that goes on after losing an expert rank keeps them.
void plan_dense_ranks(const RunOptions& o, const ModelConfig& c, int N, RunPlan& plan) {
  plan.dense_ranks.clear();
  if (N == 1 || o.dense_ffn == "attention" || plan.colocated) return;
  const bool split = o.dense_ffn == "split" || o.dense_ffn == "auto";
  if (o.on_rank_failure == "continue") {
    MOE_CHECK(o.dense_ffn == "auto", "--dense-ffn ", o.dense_ffn,
              " gives each dense FFN one expert rank, with no replica to go on "
              "with when it is lost: not with --on-rank-failure continue");
    return;
  }
  int encoder_dense = 0, decoder_dense = 0;
  for (int i = 0; i < c.num_layers; ++i) encoder_dense += !c.encoder_block_is_sparse(i);
  for (int i = 0; i < c.num_decoder_layers; ++i) decoder_dense += !c.decoder_block_is_sparse(i);
  // Dense layers are numbered through the encoder, then the decoder.
  for (int k = 0; k < encoder_dense + decoder_dense; ++k)
    plan.dense_ranks.push_back(
        split && k >= encoder_dense ? -1 : plan.attention_ranks + k % (N - plan.attention_ranks));
}

// The share of the lm_head's vocabulary that the expert ranks compute when not told: they
// compute it while the attention rank computes the rest.
constexpr double kLmHeadOnExperts = 0.5;

double lm_head_share(const RunOptions& o, bool distributed) {
  const bool keep = o.on_rank_failure == "continue";  // no replica of an lm_head part, as above
  if (o.lm_head_on_experts == "auto")
    return distributed && (o.serves || o.measures_serving) && !keep && !o.colocate
               ? kLmHeadOnExperts
               : 0;
  double share = -1;
  try {
    size_t used = 0;
    share = std::stod(o.lm_head_on_experts, &used);
    if (used != o.lm_head_on_experts.size()) share = -1;
  } catch (const std::exception&) {
  }
  MOE_CHECK(share >= 0 && share < 1,
            "--lm-head-on-experts must be auto or a share from 0 to below 1, not '",
            o.lm_head_on_experts, "'");
  MOE_CHECK(o.serves || o.measures_serving || share == 0,
            "--lm-head-on-experts is for moe generate and moe profile --serving-rows");
  MOE_CHECK(!keep || share == 0, "--lm-head-on-experts ", o.lm_head_on_experts,
            " gives each expert rank a part of the lm_head, with no replica to go on with when it "
            "is lost: not with --on-rank-failure continue");
  MOE_CHECK(!o.colocate || share == 0, "--lm-head-on-experts ", o.lm_head_on_experts,
            ": with --colocate every rank computes its own sequences' lm_head");
  return distributed ? share : 0;
}

// Attention ranks, micro-batches and where dense FFNs and the lm_head run.
void plan_roles(const RunOptions& o, const ModelConfig& c, int N, RunPlan& plan) {
  MOE_CHECK(o.attention_ranks >= 1, "--attention-ranks must be >= 1");
  MOE_CHECK(o.micro_batches >= 0, "--micro-batches must be >= 0");
  MOE_CHECK(o.dense_ffn == "attention" || o.dense_ffn == "experts" || o.dense_ffn == "split" ||
                o.dense_ffn == "auto",
            "--dense-ffn must be attention, experts, split or auto, not '", o.dense_ffn, "'");
  if (!o.serves) {
    MOE_CHECK(o.attention_ranks == 1 && o.micro_batches <= 1,
              "--attention-ranks and --micro-batches are for moe generate");
  }
  if (o.colocate) {
    MOE_CHECK(o.serves, "--colocate is for moe generate");
    MOE_CHECK(N >= 2, "--colocate needs two ranks or more (mpirun -np N)");
    MOE_CHECK(o.attention_ranks == 1 || o.attention_ranks == N,
              "--colocate makes every rank an "
              "attention rank: --attention-ranks must be left out or ",
              N, ", not ", o.attention_ranks);
    MOE_CHECK(o.dense_ffn == "auto" || o.dense_ffn == "attention", "--dense-ffn ", o.dense_ffn,
              ": with --colocate every rank runs its own sequences' dense FFNs");
    MOE_CHECK(o.on_rank_failure == "abort",
              "--colocate: a lost rank takes its sequences with it; not with --on-rank-failure "
              "continue");
    MOE_CHECK(o.expert_memory.empty() && o.memory_plan_path.empty(),
              "--colocate keeps every expert resident: not with --expert-memory or --memory-plan");
  } else {
    MOE_CHECK(N == 1 ? o.attention_ranks == 1 : o.attention_ranks < N, "--attention-ranks ",
              o.attention_ranks, " leaves no expert rank among ", N, " rank(s)");
  }
  plan.colocated = o.colocate;
  plan.attention_ranks = o.colocate ? N : o.attention_ranks;
  plan.serves = o.serves;
  const bool distributed = N > 1;
  // Two micro-batches hide the expert ranks' time behind attention and back. Below a batch of 16
  // a CPU's GEMMs are weight-bandwidth bound: each micro-batch re-reads every weight, which costs
  // more than the overlap gains (docs/BENCHMARKS.md, section 3), so one. Co-located ranks serve
  // experts while they wait: one.
  constexpr int kPingPongBatch = 16;
  const bool ping_pong = distributed && o.serves && !o.colocate && o.batch_size >= kPingPongBatch;
  plan.micro_batches = o.micro_batches > 0 ? o.micro_batches : ping_pong ? 2 : 1;
  if (!distributed) plan.micro_batches = 1;
  plan_dense_ranks(o, c, N, plan);
  plan.lm_head_on_experts = lm_head_share(o, distributed);
}

// Going on after a lost rank needs a data transport that survives a vanished peer, and a launcher
// that does not end the whole job when one process dies.
void check_can_continue(const RunPlan& plan) {
  MOE_CHECK(plan.transport == "mpi", "--on-rank-failure continue needs the MPI data transport: a ",
            plan.transport, " communicator cannot go on without one of its ranks");
  if (std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr) return;  // not Open MPI's mpirun
  for (const char* var : {"OMPI_MCA_orte_enable_recovery", "OMPI_MCA_prte_enable_recovery",
                          "PRTE_MCA_prte_enable_recovery"})
    if (const char* v = std::getenv(var); v && (std::string(v) == "1" || std::string(v) == "true"))
      return;
  MOE_FAIL(
      "--on-rank-failure continue: Open MPI's mpirun ends the whole job when one rank dies; start "
      "it with mpirun --enable-recovery (launch/moe-mpirun adds it, and gives back the exit status "
      "that such an mpirun loses)");
}

// --expert-memory: each process that holds experts (the one process, or every expert rank) keeps
// that much of them resident. --memory-plan instead seats the plan's committee members: under
// mpirun each expert rank those it holds, so the plan's memory is shared out by the expert map. On
// a CPU it moves pages of the mapped float32 checkpoint, so such a process needs a float32 CPU
// device (a compact format keeps converted copies instead); on a GPU it moves experts between
// device memory and their pinned host copies (runtime/expert_tier.hpp).
void plan_expert_budget(const RunOptions& o, const ModelConfig& c, CheckedRun& run) {
  RunPlan& plan = run.plan;
  plan.on_missing_expert = miss_policy_name(parse_miss_policy(o.on_missing_expert));
  plan.committee = committee_kind_name(parse_committee_kind(o.committee));
  if (!o.memory_plan_path.empty()) {
    MOE_CHECK(o.expert_memory.empty(),
              "--memory-plan sets the committees: not with --expert-memory");
    run.memory_plan = load_memory_plan(o.memory_plan_path, count_moe_layers(c), c.num_experts);
    plan.committees = run.memory_plan.committees;
    plan.committee_members = run.memory_plan.members;
    int64_t seats = 0;
    for (int k : plan.committees) seats += k;
    plan.expert_memory = std::to_string(seats * int64_t(expert_bytes(c)));
  }
  if (o.expert_memory.empty() && o.memory_plan_path.empty()) return;
  const int64_t all = int64_t(count_moe_layers(c)) * c.num_experts;
  MOE_CHECK(all > 0, "--expert-memory: ", o.model_dir, " has no sparse layer");
  if (o.memory_plan_path.empty()) {
    experts_within(o.expert_memory, all, expert_bytes(c));  // throws when it is not a budget
    plan.expert_memory = o.expert_memory;
  }
  const int N = int(plan.devices.size());
  for (int r = N == 1 ? 0 : plan.first_expert_rank(); r < N; ++r) {
    const std::string format = named_weight_format(plan.devices[r]);
    const bool cpu = plan.devices[r].rfind("cpu", 0) == 0;
    MOE_CHECK((cpu && (format.empty() || format == "f32")) || plan.devices[r].rfind("cuda", 0) == 0,
              "--expert-memory needs a float32 CPU device (it moves pages of the mapped "
              "checkpoint) or a CUDA device (device memory backed by pinned host memory) on ",
              N == 1 ? "the process" : "every expert rank", ", not ", plan.devices[r],
              N == 1 ? "" : " of rank " + std::to_string(r));
  }
}

}  // namespace

void RunOptions::add_to(po::options_description& opts) {
  // clang-format off
  opts.add_options()
      ("model", po::value(&model_dir)->required(), "model directory (config.json, *.safetensors)")
      ("expert-map", po::value(&expert_map_path), "expert_map.json (default: round-robin over expert ranks)")
      ("policy", po::value(&policy)->default_value("static"), "replica choice: static, round-robin, random, uniform")
      ("seed", po::value(&seed)->default_value(1), "seed of the random policy")
      ("deadline", po::value(&deadline_seconds)->default_value(60), "seconds any wait may take")
      ("on-rank-failure", po::value(&on_rank_failure)->default_value("abort"),
       "abort: a lost rank ends the run; continue: an expert rank that dies or misses the deadline is stopped and the run goes on with its experts' other replicas (moe generate; under Open MPI's mpirun needs --enable-recovery)")
      ("threads", po::value(&threads)->default_value(1), "busy CPU cores per rank (its one thread pool)")
      ("trace", po::value(&trace_path), "write a Chrome/Perfetto timeline of every rank")
      ("memory-per-rank", po::value(&memory_per_rank_bytes)->default_value(0),
       "bytes of expert weights each expert rank may hold (0: no limit)")
      ("devices", po::value(&devices),
       "device of each rank, comma-separated: cpu:THREADS[:FORMAT][@CORES] (FORMAT f32, bf16 or int8: how it stores the weight matrices; @CORES: a CPU quota), cuda:INDEX[:bf16] or cuda:local[:bf16] (the GPU of the node-local rank)")
      ("weights", po::value(&weights)->default_value("f32"),
       "weight format of the large matrices (attention, FFNs, experts, lm_head; the router stays f32) on every device that names none: f32, bf16 (half the bytes) or int8 (per-row scales, a quarter)")
      ("profile", po::value(&profile_path), "profile.json from `moe profile` (for latency-aware routing and latency samples)")
      ("latency-model", po::value(&latency_model_path), "latency model from `moe train-latency-model` (for latency-aware)")
      ("record-routing", po::value(&record_routing_path), "write every sparse-layer call's routing (JSONL)")
      ("record-latency-samples", po::value(&record_latency_samples_path),
       "write one latency sample per rank and sparse-layer call (CSV; needs --profile)")
      ("expert-memory", po::value(&expert_memory),
       "memory for resident experts in each process that holds experts (one process, or each expert rank): bytes (K, M, G: powers of 1024) or a share of the experts it holds (50%); the others stay in the mapped checkpoint on disk")
      ("on-missing-expert", po::value(&on_missing_expert)->default_value("substitute"),
       "a token routed to an expert that is not resident: wait (load it; it joins the committee), on-demand (load it for that step), substitute (the resident expert of the highest router probability), skip (residual only)")
      ("committee", po::value(&committee)->default_value("dynamic"),
       "which experts stay resident under --expert-memory: dynamic (the most important, swapped in the background), magnitude (largest weight norm, fixed), random (fixed)")
      ("memory-plan", po::value(&memory_plan_path),
       "committees from `moe plan-memory` instead of --expert-memory (under mpirun each expert rank seats the plan's members it holds); the run prints measured against predicted")
      ("attention-ranks", po::value(&attention_ranks)->default_value(1),
       "ranks 0..M-1 run attention, each on its share of the requests; the others hold experts (moe generate)")
      ("colocate", po::bool_switch(&colocate),
       "every rank runs attention on its share of the requests and holds its share of the experts, serving them while its own micro-batches wait: expert parallelism beside data-parallel attention (moe generate; blocks over MPI)")
      ("micro-batches", po::value(&micro_batches)->default_value(0),
       "micro-batches per attention rank, taking turns at the expert ranks (ping-pong; 0: chosen from the batch and the layout)")
      ("dense-ffn", po::value(&dense_ffn)->default_value("auto"),
       "where the dense FFN blocks run under mpirun: attention, experts (round-robin), split (the encoder's on the expert ranks, the decoder's on the attention rank), or auto (split)")
      ("lm-head-on-experts", po::value(&lm_head_on_experts)->default_value("auto"),
       "share of the lm_head's vocabulary whose logits the expert ranks compute in each decode step, 0 to <1, or auto (moe generate)");
  // clang-format on
}

ModelConfig load_run_config(const RunOptions& o) {
  return load_model_config((std::filesystem::path(o.model_dir) / "config.json").string());
}

CheckedRun check_run(const RunOptions& o, const ModelConfig& c, int N) {
  MOE_CHECK(o.deadline_seconds > 0, "--deadline must be > 0");
  MOE_CHECK(o.on_rank_failure == "abort" || o.on_rank_failure == "continue",
            "--on-rank-failure must be abort or continue, not '", o.on_rank_failure, "'");
  MOE_CHECK(o.serves || o.on_rank_failure == "abort",
            "--on-rank-failure continue is for moe generate");
  const int cpus = int(std::thread::hardware_concurrency());
  MOE_CHECK(o.threads >= 1 && (cpus == 0 || o.threads <= cpus), "--threads ", o.threads,
            ": must be from 1 to the machine's ", cpus, " CPU(s)");
  // Every file the run writes at its end is checked now, not after the answers are computed.
  for (const std::string* path :
       {&o.trace_path, &o.record_routing_path, &o.record_latency_samples_path})
    if (!path->empty()) check_output_path_writable(*path);
  check_dispatch_policy_name(o.policy);
  CheckedRun run;
  RunPlan& plan = run.plan;
  plan.model_dir = o.model_dir;
  plan.policy = o.policy;
  plan.profile_path = o.profile_path;
  plan.latency_model_path = o.latency_model_path;
  plan.seed = o.seed;
  plan.deadline_seconds = o.deadline_seconds;
  plan.continue_on_rank_failure = o.on_rank_failure == "continue";
  plan.trace = !o.trace_path.empty();
  plan_roles(o, c, N, plan);
  MOE_CHECK(plan.lm_head_columns(0, c.vocab_size).second >= 1, "--lm-head-on-experts ",
            o.lm_head_on_experts, " leaves the attention ranks none of the ", c.vocab_size,
            " lm_head columns");
  if (N > 1) {
    plan.expert_map = run_expert_map(o, c, N, plan.first_expert_rank());
  } else {
    MOE_CHECK(o.expert_map_path.empty() || std::filesystem::exists(o.expert_map_path),
              o.expert_map_path, ": cannot open expert map");
  }
  plan.devices.assign(N, "cpu:" + std::to_string(o.threads));
  if (!o.devices.empty()) {
    const std::vector<std::string> given = split_commas(o.devices);
    MOE_CHECK(int(given.size()) == N, "--devices lists ", given.size(), " devices for ", N,
              " rank(s)");
    for (const auto& spec : given) make_device_spec_check(spec);
    plan.devices = given;
  }
  parse_weight_format(o.weights, "--weights");
  for (auto& spec : plan.devices) {
    spec = with_weight_format(spec, o.weights);
    make_device_spec_check(spec);
  }
  // Co-located ranks keep work and results apart by MPI tags.
  plan.transport = plan.colocated ? "mpi" : transport_for(plan.devices);
  if (plan.continue_on_rank_failure && N > 1) check_can_continue(plan);
  plan_expert_budget(o, c, run);
  if (o.policy == "latency-aware" || !o.record_latency_samples_path.empty())
    MOE_CHECK(!o.profile_path.empty(),
              "--policy latency-aware and --record-latency-samples need --profile");
  if (!o.profile_path.empty()) {
    run.profile = load_profile(o.profile_path);
    // The policy and the samples price each rank by its entry; the serving model (a plain run
    // with a profile predicts its time) takes the profile's curves for any layout.
    if (o.policy == "latency-aware" || !o.record_latency_samples_path.empty())
      for (int r = plan.first_expert_rank(); r < N; ++r)
        MOE_CHECK(run.profile.has(r), o.profile_path, ": has no entry for expert rank ", r);
  }
  if (o.policy == "latency-aware")
    MOE_CHECK(!o.latency_model_path.empty(), "--policy latency-aware needs --latency-model");
  if (!o.latency_model_path.empty())
    run.latency_model = std::make_shared<LatencyModel>(LatencyModel::load(o.latency_model_path));
  run.trace_path = o.trace_path;
  run.record_routing_path = o.record_routing_path;
  run.record_latency_samples_path = o.record_latency_samples_path;
  return run;
}

}  // namespace moe

#include "router/latency_model.hpp"

#include <algorithm>
#include <cereal/archives/binary.hpp>
#include <cereal/types/string.hpp>
#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>

#include "runtime/atomic_file.hpp"
#include "runtime/bounded_archive.hpp"
#include "runtime/error.hpp"

namespace moe {
namespace {

constexpr char kMagic[] = "moe-latency-model";

// Least squares on standardised features with a bias, by the normal equations (9×9).
std::vector<double> fit_linear(const std::vector<LatencyFeatures>& x,
                               const std::vector<double>& y) {
  const int n = kLatencyFeatures + 1;
  std::vector<double> a(n * n, 0.0), b(n, 0.0);
  for (size_t i = 0; i < x.size(); ++i) {
    double row[kLatencyFeatures + 1];
    for (int f = 0; f < kLatencyFeatures; ++f) row[f] = x[i][f];
    row[kLatencyFeatures] = 1.0;
    for (int r = 0; r < n; ++r) {
      b[r] += row[r] * y[i];
      for (int c = 0; c < n; ++c) a[r * n + c] += row[r] * row[c];
    }
  }
  for (int r = 0; r < n; ++r) a[r * n + r] += 1e-6;  // ridge: constant features stay solvable
  for (int col = 0; col < n; ++col) {                // Gauss-Jordan with partial pivoting
    int pivot = col;
    for (int r = col + 1; r < n; ++r)
      if (std::fabs(a[r * n + col]) > std::fabs(a[pivot * n + col])) pivot = r;
    for (int c = 0; c < n; ++c) std::swap(a[col * n + c], a[pivot * n + c]);
    std::swap(b[col], b[pivot]);
    for (int r = 0; r < n; ++r) {
      if (r == col) continue;
      const double f = a[r * n + col] / a[col * n + col];
      for (int c = 0; c < n; ++c) a[r * n + c] -= f * a[col * n + c];
      b[r] -= f * b[col];
    }
  }
  for (int r = 0; r < n; ++r) b[r] /= a[r * n + r];
  return b;
}

}  // namespace

// Forward and backward passes of the MLP over one mini-batch, with Adam state.
struct MlpTrainer {
  LatencyModel& m;
  std::vector<double> grad, adam_m, adam_v;
  int t = 0;

  explicit MlpTrainer(LatencyModel& model) : m(model) {}

  std::vector<double*> params() {
    std::vector<double*> p;
    for (auto* v : {&m.w1_, &m.b1_, &m.w2_, &m.b2_, &m.w3_})
      for (auto& x : *v) p.push_back(&x);
    p.push_back(&m.b3_);
    return p;
  }

  double forward(const LatencyFeatures& x, std::vector<double>& h1, std::vector<double>& h2) const {
    h1.resize(m.hidden_);
    h2.resize(m.hidden_);
    return m.forward(x, h1.data(), h2.data());
  }

  // Adds d(loss)/d(params) for one sample to `g` (laid out as params()); returns the loss.
  double backward(const LatencyFeatures& x, double target, std::vector<double>& g) const {
    const int H = m.hidden_, F = kLatencyFeatures;
    std::vector<double> h1, h2;
    const double out = forward(x, h1, h2);
    const double d_out = 2 * (out - target);
    const size_t o_w1 = 0, o_b1 = o_w1 + H * F, o_w2 = o_b1 + H, o_b2 = o_w2 + H * H,
                 o_w3 = o_b2 + H, o_b3 = o_w3 + H;
    g[o_b3] += d_out;
    std::vector<double> d_h2(H), d_h1(H, 0.0);
    for (int j = 0; j < H; ++j) {
      g[o_w3 + j] += d_out * h2[j];
      d_h2[j] = h2[j] > 0 ? d_out * m.w3_[j] : 0.0;
    }
    for (int j = 0; j < H; ++j) {
      if (d_h2[j] == 0) continue;
      g[o_b2 + j] += d_h2[j];
      for (int k = 0; k < H; ++k) {
        g[o_w2 + j * H + k] += d_h2[j] * h1[k];
        d_h1[k] += d_h2[j] * m.w2_[j * H + k];
      }
    }
    for (int k = 0; k < H; ++k) {
      if (h1[k] <= 0) continue;
      g[o_b1 + k] += d_h1[k];
      for (int f = 0; f < F; ++f) g[o_w1 + k * F + f] += d_h1[k] * x[f];
    }
    return (out - target) * (out - target);
  }

  void adam_step(const std::vector<double>& g, double lr, double weight_decay) {
    auto p = params();
    if (adam_m.empty()) {
      adam_m.assign(p.size(), 0);
      adam_v.assign(p.size(), 0);
    }
    ++t;
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const size_t H = m.hidden_, F = kLatencyFeatures;
    auto is_weight = [&](size_t i) {  // params() order: w1, b1, w2, b2, w3, b3
      return i < H * F || (i >= H * F + H && i < H * F + H + H * H) ||
             (i >= H * F + 2 * H + H * H && i < p.size() - 1);
    };
    for (size_t i = 0; i < p.size(); ++i) {
      if (weight_decay > 0 && is_weight(i)) *p[i] -= lr * weight_decay * *p[i];
      adam_m[i] = b1 * adam_m[i] + (1 - b1) * g[i];
      adam_v[i] = b2 * adam_v[i] + (1 - b2) * g[i] * g[i];
      const double mh = adam_m[i] / (1 - std::pow(b1, t)), vh = adam_v[i] / (1 - std::pow(b2, t));
      *p[i] -= lr * mh / (std::sqrt(vh) + eps);
    }
  }
};

LatencyFeatures LatencyModel::normalise(const LatencyFeatures& x) const {
  LatencyFeatures out{};
  for (int f = 0; f < kLatencyFeatures; ++f)
    out[f] = std::clamp((std::log1p(std::max(x[f], 0.0)) - mean_[f]) / stddev_[f], lo_[f], hi_[f]);
  return out;
}

double LatencyModel::table_log_us(const LatencyFeatures& x) {
  return std::log(std::max(x[6] + x[7], 1.0));
}

double LatencyModel::forward(const LatencyFeatures& x, double* h1, double* h2) const {
  const int H = hidden_;
  for (int j = 0; j < H; ++j) {
    double s = b1_[j];
    for (int f = 0; f < kLatencyFeatures; ++f) s += w1_[j * kLatencyFeatures + f] * x[f];
    h1[j] = std::max(s, 0.0);
  }
  for (int j = 0; j < H; ++j) {
    double s = b2_[j];
    for (int k = 0; k < H; ++k) s += w2_[j * H + k] * h1[k];
    h2[j] = std::max(s, 0.0);
  }
  double out = b3_;
  for (int j = 0; j < H; ++j) out += w3_[j] * h2[j];
  return out;
}

double LatencyModel::predict_us(const LatencyFeatures& x) const {
  MOE_CHECK(!empty(), "latency model: not trained");
  double h1[kMaxHidden], h2[kMaxHidden];  // no allocation: this runs per group and replica
  return std::exp(table_log_us(x) + forward(normalise(x), h1, h2));
}

double mean_abs_percentage_error(const std::vector<double>& predicted,
                                 const std::vector<double>& actual) {
  double sum = 0;
  for (size_t i = 0; i < actual.size(); ++i) sum += std::fabs(predicted[i] - actual[i]) / actual[i];
  return actual.empty() ? 0 : sum / double(actual.size());
}

LatencyModel LatencyModel::train(const std::vector<LatencySample>& samples, const TrainOptions& o,
                                 TrainReport* report) {
  MOE_CHECK(samples.size() >= 10, "latency model: need at least 10 samples, got ", samples.size());
  for (const auto& s : samples)
    MOE_CHECK(s.latency_us > 0 && std::isfinite(s.latency_us),
              "latency model: a sample has latency ", s.latency_us, " (must be > 0)");
  std::mt19937_64 rng(o.seed);
  std::vector<size_t> order(samples.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  MOE_CHECK(o.held_out_fraction >= 0 && o.held_out_fraction < 1,
            "latency model: the held-out fraction must be in [0, 1), got ", o.held_out_fraction);
  MOE_CHECK(o.weight_decay >= 0 && o.weight_decay * o.learning_rate < 1,
            "latency model: weight decay must be >= 0 and below 1 / learning rate (",
            1 / o.learning_rate, "), got ", o.weight_decay);
  const size_t held = std::max<size_t>(1, size_t(o.held_out_fraction * samples.size()));
  MOE_CHECK(held < samples.size(), "latency model: holding out ", held, " of ", samples.size(),
            " samples leaves none to train on");
  const std::vector<size_t> test(order.begin(), order.begin() + held),
      train(order.begin() + held, order.end());

  MOE_CHECK(o.hidden >= 1 && o.hidden <= kMaxHidden, "latency model: hidden width must be 1..",
            kMaxHidden, ", got ", o.hidden);
  LatencyModel m;
  m.hidden_ = o.hidden;
  for (int f = 0; f < kLatencyFeatures; ++f) {  // standardise log1p(feature) on the training split
    double sum = 0, sq = 0;
    for (size_t i : train) {
      const double v = std::log1p(std::max(samples[i].x[f], 0.0));
      sum += v;
      sq += v * v;
    }
    m.mean_[f] = sum / train.size();
    m.stddev_[f] = std::sqrt(std::max(sq / train.size() - m.mean_[f] * m.mean_[f], 0.0)) + 1e-6;
    m.lo_[f] = std::numeric_limits<double>::infinity();
    m.hi_[f] = -m.lo_[f];
    for (size_t i : train) {
      const double z = (std::log1p(std::max(samples[i].x[f], 0.0)) - m.mean_[f]) / m.stddev_[f];
      m.lo_[f] = std::min(m.lo_[f], z);
      m.hi_[f] = std::max(m.hi_[f], z);
    }
  }
  const int H = o.hidden, F = kLatencyFeatures;
  std::normal_distribution<double> init(0.0, 1.0);
  auto fill = [&](std::vector<double>& v, size_t n, double scale) {
    v.resize(n);
    for (auto& x : v) x = init(rng) * scale;
  };
  fill(m.w1_, size_t(H) * F, std::sqrt(2.0 / F));
  fill(m.w2_, size_t(H) * H, std::sqrt(2.0 / H));
  fill(m.w3_, H, std::sqrt(1.0 / H));
  m.b1_.assign(H, 0.0);
  m.b2_.assign(H, 0.0);
  // Targets: log latency for the linear baseline, its residual over the table for the MLP.
  std::vector<LatencyFeatures> xs(samples.size());
  std::vector<double> ys(samples.size()), residuals(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    xs[i] = m.normalise(samples[i].x);
    ys[i] = std::log(samples[i].latency_us);
    residuals[i] = ys[i] - table_log_us(samples[i].x);
  }
  double mean_residual = 0;
  for (size_t i : train) mean_residual += residuals[i];
  m.b3_ = mean_residual / train.size();
  MlpTrainer trainer(m);
  const size_t n_params = trainer.params().size();
  std::vector<size_t> shuffled = train;
  double loss = 0;
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    loss = 0;
    const double lr =
        o.learning_rate * (0.05 + 0.95 * 0.5 * (1 + std::cos(M_PI * epoch / o.epochs)));
    for (size_t start = 0; start < shuffled.size(); start += o.batch) {
      const size_t end = std::min(shuffled.size(), start + size_t(o.batch));
      std::vector<double> g(n_params, 0.0);
      for (size_t k = start; k < end; ++k)
        loss += trainer.backward(xs[shuffled[k]], residuals[shuffled[k]], g);
      for (auto& v : g) v /= double(end - start);
      trainer.adam_step(g, lr, o.weight_decay);
    }
    loss /= shuffled.size();
  }
  if (report) {
    report->train_samples = train.size();
    report->held_out_samples = test.size();
    report->final_train_loss = loss;
    std::vector<LatencyFeatures> tx;
    std::vector<double> ty;
    for (size_t i : train) {
      tx.push_back(xs[i]);
      ty.push_back(ys[i]);
    }
    const auto linear = fit_linear(tx, ty);
    std::vector<double> actual, mlp, lin, table;
    for (size_t i : test) {
      actual.push_back(samples[i].latency_us);
      mlp.push_back(m.predict_us(samples[i].x));
      double z = linear[kLatencyFeatures];
      for (int f = 0; f < kLatencyFeatures; ++f) z += linear[f] * xs[i][f];
      lin.push_back(std::exp(z));
      table.push_back(std::exp(table_log_us(samples[i].x)));
    }
    report->mlp_mape = mean_abs_percentage_error(mlp, actual);
    report->linear_mape = mean_abs_percentage_error(lin, actual);
    report->profile_mape = mean_abs_percentage_error(table, actual);
  }
  return m;
}

void LatencyModel::save(const std::string& path) const {
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(kMagic, sizeof(kMagic) - 1);  // raw, so a foreign file is recognised before decoding
    cereal::BinaryOutputArchive ar(out);
    ar(kVersion, *this);
  });
}

LatencyModel LatencyModel::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MOE_CHECK(in.good(), path, ": cannot open latency model");
  LatencyModel m;
  std::string magic(sizeof(kMagic) - 1, '\0');
  in.read(magic.data(), std::streamsize(magic.size()));
  MOE_CHECK(in.good() && magic == kMagic, path, ": not a latency model file");
  uint32_t version = 0;
  // Sizes in the file are checked against its length before anything is allocated for them.
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  try {
    BoundedBinaryInputArchive ar(bytes);
    ar(version);
    MOE_CHECK(version == kVersion, path, ": latency model version ", version, ", this build reads ",
              kVersion);
    ar(m);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    MOE_FAIL(path, ": corrupt latency model: ", e.what());
  }
  MOE_CHECK(m.hidden_ > 0 && m.hidden_ <= kMaxHidden &&
                m.w1_.size() == size_t(m.hidden_) * kLatencyFeatures &&
                m.w2_.size() == size_t(m.hidden_) * m.hidden_ &&
                m.b1_.size() == size_t(m.hidden_) && m.b2_.size() == size_t(m.hidden_) &&
                m.w3_.size() == size_t(m.hidden_),
            path, ": corrupt latency model (bad shapes)");
  for (int f = 0; f < kLatencyFeatures; ++f)
    MOE_CHECK(std::isfinite(m.lo_[f]) && std::isfinite(m.hi_[f]) && m.lo_[f] <= m.hi_[f] &&
                  m.stddev_[f] > 0,
              path, ": corrupt latency model (feature ", f, "'s range)");
  return m;
}

std::string latency_samples_header() {
  return "router_score,router_entropy,group_tokens,rank_tokens,rank_latency_us,inflight_us,"
         "profiled_cost_us,transport_cost_us,latency_us";
}

std::string latency_sample_line(const LatencySample& s) {
  std::ostringstream out;
  out.precision(9);
  for (double v : s.x) out << v << ",";
  out << s.latency_us;
  return out.str();
}

std::vector<LatencySample> load_latency_samples(const std::string& path) {
  std::ifstream in(path);
  MOE_CHECK(in.good(), path, ": cannot open latency samples");
  std::string line;
  std::getline(in, line);
  MOE_CHECK(line == latency_samples_header(), path, ": first line must be the header '",
            latency_samples_header(), "'");
  std::vector<LatencySample> out;
  for (int number = 2; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    std::istringstream row(line);
    LatencySample s;
    std::string cell;
    for (int c = 0; c <= kLatencyFeatures; ++c) {
      MOE_CHECK(std::getline(row, cell, ','), path, ":", number, ": expected ",
                kLatencyFeatures + 1, " columns");
      double v = 0;
      try {
        v = std::stod(cell);
      } catch (const std::exception&) {
        MOE_FAIL(path, ":", number, ": column ", c + 1, " is not a number: '", cell, "'");
      }
      (c < kLatencyFeatures ? s.x[c] : s.latency_us) = v;
    }
    out.push_back(s);
  }
  return out;
}

}  // namespace moe

// Agreement of the native layers' passes across devices and buffer states
// (docs/DESIGN.md §3): the GPU against the CPU, and every pass against
// a reference pass on clean buffers, so that the tests fail on the kinds of
// bug a device comparison alone misses.
//
// Layers (LayerAgreementTest, float and double). The reference pass is the
// CPU pass on a fresh layer whose parameter diffs start at zero, the state the
// layers' GradientChecker tests check. Each checked pass (the CPU, and the GPU
// in CUDA builds) runs on its own layer and blobs, with poisoned buffers before
// every pass: tops and bottom diffs NaN, parameter diffs non-zero (D0). So
//   - a forward or backward that leaves elements unwritten (does nothing, or
//     a loop or kernel launch that stops short) leaves NaN behind;
//   - parameter diffs must come back as D0 + gradient (Caffe accumulates
//     them), which catches an overwrite;
//   - a bottom diff whose propagate_down is false must stay untouched (NaN).
// Every propagate_down combination runs, for two iterations with an SGD
// update of the parameters in between (Blob::Update, on the pass's device),
// on shapes whose element counts exceed one CUDA block (512 threads) without
// being multiples of it. A blob agrees when both hold:
//   max |got - ref| <= atol + rtol * max|ref|                  (max-relative)
//   |got_i - ref_i| <= atol + min(100 rtol, 0.01) |ref_i| + 0.1 rtol max|ref|
//                                                             (element-wise)
// with rtol = 1e-4, atol = 1e-6 for float and 1e-10, 1e-12 for double; the
// reference must be finite and not all zeros.
//
// Nets (NetAgreementTest, float): two SGD iterations (iter_size 2, momentum,
// weight decay, gradient clipping) of a whole net by Caffe's solver, a reference solver on the
// CPU and a second solver with its own net, poisoned (every blob's data but
// the data layers' tops, every diff the backward pass writes) before each
// iteration, on the GPU in CUDA builds and on the CPU otherwise. The net is
// $REID_AGREEMENT_NET (tools/gpu_check.sh passes the paper-size ALL net built
// from native layers only), else a small built-in net of the same layer types.
// Tolerances as above with rtol = 1e-3: float sums over thousands of terms
// (cuBLAS and OpenBLAS order them differently) through a deep net; atol =
// 1e-9 only, because clipped parameter updates of a paper-size net are of
// order 1e-6. Dropout layers are taken out (their masks come from different
// generators per device, and the CPU one shifts DummyData's draws); Input
// layers' tops hold fixed values in [-1, 1), or 0/1 where the top's name
// contains "label" or "sim".
//
// CUDA builds need a GPU for these tests and fail without one, saying so;
// REID_AGREEMENT_DRY_RUN=1 runs the GPU's passes on the CPU instead, to check
// the tests themselves where there is no GPU (it proves nothing about GPUs).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layer.hpp"
#include "caffe/layer_factory.hpp"
#include "caffe/net.hpp"
#include "caffe/sgd_solvers.hpp"
#include "caffe/syncedmem.hpp"
#include "caffe/util/upgrade_proto.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

namespace {

// Named host copies of blob contents, in the order they were taken.
template <typename Dtype>
struct Snapshot {
  vector<string> names;
  vector<vector<Dtype> > values;
  void Add(const string& name, const Dtype* p, int n) {
    names.push_back(name);
    values.push_back(vector<Dtype>(p, p + n));
  }
};

struct Tolerance {
  double rtol, atol;
};

template <typename Dtype> Tolerance LayerTolerance() { return {1e-4, 1e-6}; }
template <> Tolerance LayerTolerance<double>() { return {1e-10, 1e-12}; }

// Compares `got` with `ref` blob by blob (the header's two criteria), prints
// one line per blob and a summary, and returns the names of the blobs that
// disagree. NaN or inf anywhere in `got` disagrees.
template <typename Dtype>
vector<string> Compare(const string& what, const Snapshot<Dtype>& ref,
    const Snapshot<Dtype>& got, Tolerance tol) {
  EXPECT_EQ(ref.names, got.names) << what;
  const double elem_rtol = std::min(100 * tol.rtol, 1e-2);
  vector<string> bad;
  double worst_abs = 0, worst_rel = 0;
  for (int b = 0; b < ref.values.size() && b < got.values.size(); ++b) {
    const vector<Dtype>& r = ref.values[b];
    const vector<Dtype>& g = got.values[b];
    EXPECT_EQ(r.size(), g.size()) << what << " " << ref.names[b];
    const int n = std::min(r.size(), g.size());
    double scale = 0, diff = 0;
    for (int i = 0; i < n; ++i) {
      scale = std::max(scale, std::fabs(static_cast<double>(r[i])));
    }
    int first_bad = -1, num_bad = 0;
    for (int i = 0; i < n; ++i) {
      const double d = std::fabs(static_cast<double>(g[i]) - r[i]);
      const bool ok = std::isfinite(d) && d <= tol.atol
          + elem_rtol * std::fabs(static_cast<double>(r[i]))
          + 0.1 * tol.rtol * scale;
      if (!ok && num_bad++ == 0) first_bad = i;
      diff = std::isfinite(d) ? std::max(diff, d)
          : std::numeric_limits<double>::infinity();
    }
    const double rel = diff / std::max(scale, 1e-30);
    worst_abs = std::max(worst_abs, diff);
    worst_rel = std::max(worst_rel, rel);
    const bool ok = num_bad == 0 && diff <= tol.atol + tol.rtol * scale;
    std::printf("    %-4s %-44s n=%-8d max|ref|=%-11.4g max|diff|=%-11.4g "
        "rel=%.3g", ok ? "ok" : "BAD", ref.names[b].c_str(), n, scale, diff,
        rel);
    if (num_bad > 0) {
      std::printf("  %d elements off, first [%d] ref %.7g got %.7g", num_bad,
          first_bad, static_cast<double>(r[first_bad]),
          static_cast<double>(g[first_bad]));
    }
    std::printf("\n");
    if (!ok) bad.push_back(ref.names[b]);
  }
  std::printf("  %s: %d blobs, max abs difference %.4g, max relative "
      "difference %.4g (tolerance %.3g + %.3g * max|ref|, element-wise "
      "%.3g + %.3g * |ref| + %.3g * max|ref|)\n", what.c_str(),
      static_cast<int>(ref.values.size()), worst_abs, worst_rel, tol.atol,
      tol.rtol, tol.atol, elem_rtol, 0.1 * tol.rtol);
  std::fflush(stdout);
  return bad;
}

// The reference itself must be finite and must not be all zeros: agreement
// with a vacuous reference would prove nothing.
template <typename Dtype>
void ExpectMeaningful(const string& what, const Snapshot<Dtype>& ref) {
  for (int b = 0; b < ref.values.size(); ++b) {
    double scale = 0;
    bool finite = true;
    for (int i = 0; i < ref.values[b].size(); ++i) {
      const double v = ref.values[b][i];
      finite = finite && std::isfinite(v);
      scale = std::max(scale, std::fabs(v));
    }
    EXPECT_TRUE(finite) << what << ": " << ref.names[b] << " not finite";
    EXPECT_GT(scale, 0) << what << ": " << ref.names[b] << " is all zeros";
  }
}

// Deterministic pseudo-random values in [-1, 1), the same on every device
// and independent of Caffe's generators.
template <typename Dtype>
void FillDeterministic(Dtype* p, int n, unsigned seed) {
  unsigned s = seed * 2654435761u + 12345u;
  for (int i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    p[i] = static_cast<Dtype>((s >> 8) * (1.0 / 8388608.0) - 1.0);
  }
}

template <typename Dtype>
void FillNaN(Dtype* p, int n) {
  std::fill(p, p + n, std::numeric_limits<Dtype>::quiet_NaN());
}

template <typename Dtype>
bool AllNaN(const Dtype* p, int n) {
  for (int i = 0; i < n; ++i) {
    if (!std::isnan(static_cast<double>(p[i]))) return false;
  }
  return true;
}

// The poisoned parameter diffs D0 of parameter blob k.
const unsigned kParamDiffSeed = 500;

#ifndef CPU_ONLY
// REID_AGREEMENT_DRY_RUN=1: the GPU's passes run on the CPU.
bool DryRun() {
  const char* v = std::getenv("REID_AGREEMENT_DRY_RUN");
  return v && std::string(v) == "1";
}
#endif

// The device of the second, checked pass: the GPU in CUDA builds.
Caffe::Brew CheckedDevice() {
#ifdef CPU_ONLY
  return Caffe::CPU;
#else
  return DryRun() ? Caffe::CPU : Caffe::GPU;
#endif
}

const char* DeviceName(Caffe::Brew mode) {
  if (mode == Caffe::GPU) return "GPU";
#ifndef CPU_ONLY
  if (DryRun()) return "CPU (dry run)";
#endif
  return "CPU";
}

// CUDA builds: without a device the GPU pass would abort the whole binary
// (cudaMallocHost fails fatally); fail this test alone, saying why.
::testing::AssertionResult HaveCheckedDevice() {
#ifndef CPU_ONLY
  if (DryRun()) {
    std::printf("  REID_AGREEMENT_DRY_RUN=1: the GPU's passes run on the CPU "
        "(no GPU used)\n");
    return ::testing::AssertionSuccess();
  }
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    return ::testing::AssertionFailure() << "no CUDA device ("
        << cudaGetErrorString(err) << "): these tests need a GPU "
        "(tools/gpu_check.sh runs them on one; REID_AGREEMENT_DRY_RUN=1 "
        "checks them on the CPU)";
  }
#endif
  return ::testing::AssertionSuccess();
}

// One layer with its own bottoms and tops, run for several iterations.
template <typename Dtype>
class LayerRun {
 public:
  LayerRun(const LayerParameter& param, const vector<vector<int> >& shapes,
      int num_tops) {
    Caffe::set_mode(Caffe::CPU);
    for (int i = 0; i < shapes.size() + num_tops; ++i) {
      own_.push_back(shared_ptr<Blob<Dtype> >(i < shapes.size()
          ? new Blob<Dtype>(shapes[i]) : new Blob<Dtype>()));
      (i < shapes.size() ? bottom_ : top_).push_back(own_.back().get());
    }
    FillBottoms(0);
    layer_ = LayerRegistry<Dtype>::CreateLayer(param);
    layer_->SetUp(bottom_, top_);
  }

  vector<shared_ptr<Blob<Dtype> > >& params() { return layer_->blobs(); }

  void CopyParams(LayerRun* from) {
    CHECK_EQ(from->params().size(), params().size());
    for (int k = 0; k < params().size(); ++k) {
      params()[k]->CopyFrom(*from->params()[k]);
    }
  }

  // Forward and backward in `mode` on iteration `it`'s bottoms and top diffs
  // (the same for every run), then the SGD update; returns the tops, the
  // bottom diffs that propagate down and the parameter gradients. Poisoned:
  // see the file's header; `untouched` gets the bottoms whose diff the
  // backward pass wrote although their propagate_down was false.
  Snapshot<Dtype> Iterate(Caffe::Brew mode, bool poison, int it,
      const vector<bool>& down, vector<string>* untouched) {
    Caffe::set_mode(mode);
    FillBottoms(it);
    vector<shared_ptr<Blob<Dtype> > >& p = params();
    for (int k = 0; k < p.size(); ++k) {
      Dtype* diff = p[k]->mutable_cpu_diff();
      if (poison) {
        FillDeterministic(diff, p[k]->count(), kParamDiffSeed + k);
      } else {
        caffe_set(p[k]->count(), Dtype(0), diff);
      }
    }
    if (poison) {
      for (int i = 0; i < top_.size(); ++i) {
        FillNaN(top_[i]->mutable_cpu_data(), top_[i]->count());
        FillNaN(top_[i]->mutable_cpu_diff(), top_[i]->count());
      }
      for (int i = 0; i < bottom_.size(); ++i) {
        FillNaN(bottom_[i]->mutable_cpu_diff(), bottom_[i]->count());
      }
    }
    layer_->Forward(bottom_, top_);
    Snapshot<Dtype> snap;
    char name[96];
    for (int i = 0; i < top_.size(); ++i) {
      std::snprintf(name, sizeof(name), "top[%d] %s", i,
          top_[i]->shape_string().c_str());
      snap.Add(name, top_[i]->cpu_data(), top_[i]->count());
      FillDeterministic(top_[i]->mutable_cpu_diff(), top_[i]->count(),
          100 * (it + 1) + i);
    }
    layer_->Backward(top_, down, bottom_);
    for (int i = 0; i < bottom_.size(); ++i) {
      const Dtype* diff = bottom_[i]->cpu_diff();
      if (down[i]) {
        std::snprintf(name, sizeof(name), "bottom[%d].diff", i);
        snap.Add(name, diff, bottom_[i]->count());
      } else if (poison && !AllNaN(diff, bottom_[i]->count())) {
        std::snprintf(name, sizeof(name), "bottom[%d].diff", i);
        untouched->push_back(name);
      }
    }
    // The gradient (the diff less D0), then data -= 0.1 gradient.
    for (int k = 0; k < p.size(); ++k) {
      const int n = p[k]->count();
      vector<Dtype> d0(n, Dtype(0));
      if (poison) FillDeterministic(&d0[0], n, kParamDiffSeed + k);
      Dtype* diff = p[k]->mutable_cpu_diff();
      for (int i = 0; i < n; ++i) diff[i] -= d0[i];
      std::snprintf(name, sizeof(name), "param[%d].diff %s", k,
          p[k]->shape_string().c_str());
      snap.Add(name, diff, n);
      caffe_scal(n, Dtype(0.1), diff);
      p[k]->Update();  // on the device that holds the data
    }
    Caffe::set_mode(Caffe::CPU);
    return snap;
  }

 private:
  void FillBottoms(int it) {
    for (int i = 0; i < bottom_.size(); ++i) {
      FillDeterministic(bottom_[i]->mutable_cpu_data(), bottom_[i]->count(),
          10 * (it + 1) + i);
    }
  }

  vector<shared_ptr<Blob<Dtype> > > own_;
  vector<Blob<Dtype>*> bottom_, top_;
  shared_ptr<Layer<Dtype> > layer_;
};

string DownString(const vector<bool>& down) {
  string s;
  for (int i = 0; i < down.size(); ++i) {
    s += string(i ? "," : "") + (down[i] ? "1" : "0");
  }
  return s;
}

}  // namespace

template <typename Dtype>
class LayerAgreementTest : public ::testing::Test {
 protected:
  virtual void TearDown() { Caffe::set_mode(Caffe::CPU); }

  // For every propagate_down combination: the reference run and the checked
  // runs (CPU, and GPU in CUDA builds) from the reference's initial
  // parameters, two iterations each, each checked pass against the reference.
  void Check(const LayerParameter& param, const vector<vector<int> >& shapes,
      int num_tops) {
    ASSERT_TRUE(HaveCheckedDevice());
    vector<Caffe::Brew> devices(1, Caffe::CPU);
#ifndef CPU_ONLY
    devices.push_back(CheckedDevice());
#endif
    const int nb = shapes.size();
    for (int mask = (1 << nb) - 1; mask >= 0; --mask) {
      vector<bool> down(nb);
      for (int i = 0; i < nb; ++i) down[i] = (mask >> i) & 1;
      Caffe::set_random_seed(1701);
      LayerRun<Dtype> ref(param, shapes, num_tops);
      vector<shared_ptr<LayerRun<Dtype> > > runs;
      for (int r = 0; r < devices.size(); ++r) {
        runs.push_back(shared_ptr<LayerRun<Dtype> >(
            new LayerRun<Dtype>(param, shapes, num_tops)));
        runs.back()->CopyParams(&ref);
      }
      for (int it = 0; it < 2; ++it) {
        const string when = " [propagate_down " + DownString(down)
            + ", iteration " + std::to_string(it + 1) + "]";
        vector<string> ignored;
        const Snapshot<Dtype> expected = ref.Iterate(Caffe::CPU, false, it,
            down, &ignored);
        ExpectMeaningful(param.type() + " CPU reference" + when, expected);
        for (int r = 0; r < runs.size(); ++r) {
          const string what = param.type() + " " + DeviceName(devices[r])
              + " vs CPU" + when;
          vector<string> untouched;
          const Snapshot<Dtype> got = runs[r]->Iterate(devices[r], true, it,
              down, &untouched);
          const vector<string> bad = Compare(what, expected, got,
              LayerTolerance<Dtype>());
          EXPECT_TRUE(bad.empty()) << what << ": " << bad.size()
              << " blob(s) disagree, first " << bad[0];
          EXPECT_TRUE(untouched.empty()) << what << ": " << untouched[0]
              << " written although its propagate_down is false";
        }
      }
    }
  }
};

TYPED_TEST_CASE(LayerAgreementTest, TestDtypes);

// Paper 3.2, eq. 3: 600 sequences of T = 3 (more rows than one block of the
// per-row softmax kernels); both tops (average and weights) carry diffs.
TYPED_TEST(LayerAgreementTest, AttentionAverageManyRows) {
  LayerParameter param;
  param.set_type("AttentionAverage");
  this->Check(param, vector<vector<int> >{{600, 3, 2}, {600, 3}}, 2);
}

// Few sequences of wide features: 900 averaged and 5400 feature-gradient
// elements.
TYPED_TEST(LayerAgreementTest, AttentionAverageWideRows) {
  LayerParameter param;
  param.set_type("AttentionAverage");
  this->Check(param, vector<vector<int> >{{3, 6, 300}, {3, 6}}, 1);
}

TYPED_TEST(LayerAgreementTest, AttentionAverageAxis2) {
  LayerParameter param;
  param.set_type("AttentionAverage");
  param.mutable_attention_average_param()->set_axis(2);
  this->Check(param, vector<vector<int> >{{2, 3, 5, 7}, {2, 3, 5}}, 1);
}

// Paper 3.3: the six-direction sweep over (N, C, T, H, W) = (2, 5, 3, 8, 6),
// Hd = 16: 1440 gathered inputs, 4608 hidden states, 576 to 1536 elements
// per step; larger weights than the defaults so the gates saturate
// differently per site.
TYPED_TEST(LayerAgreementTest, SpatialLSTM) {
  LayerParameter param;
  param.set_type("SpatialLSTM");
  SpatialLSTMParameter* p = param.mutable_spatial_lstm_param();
  p->set_num_output(16);
  p->mutable_weight_filler()->set_type("gaussian");
  p->mutable_weight_filler()->set_std(0.4);
  p->mutable_bias_filler()->set_type("gaussian");
  p->mutable_bias_filler()->set_std(0.2);
  this->Check(param, vector<vector<int> >{{2, 5, 3, 8, 6}}, 1);
}

// ---- two training iterations of a whole net ------------------------------------

namespace {

// Frames (N*T, 3, 24, 12) -> conv/pool/fc per frame -> temporal attention
// (AttentionAverage) on one branch and the six-direction spatial LSTM on the
// conv maps on the other, both into an EuclideanLoss. Same layer types as the
// ALL net, small sizes (but every native layer's counts above 512); Reshape
// reinterprets (N*T, C, H, W) as (N, C', T', H, W), which is all a device
// comparison needs.
const char* kBuiltinNet =
    "name: 'builtin_native_net' force_backward: true "
    "layer { name: 'data' type: 'DummyData' top: 'frames' top: 'target' "
    "  dummy_data_param { shape { dim: 12 dim: 3 dim: 24 dim: 12 } "
    "    shape { dim: 2 dim: 300 } "
    "    data_filler { type: 'gaussian' std: 1 } "
    "    data_filler { type: 'uniform' min: -1 max: 1 } } } "
    "layer { name: 'conv1' type: 'Convolution' bottom: 'frames' top: 'conv1' "
    "  convolution_param { num_output: 8 kernel_size: 3 pad: 1 "
    "    weight_filler { type: 'xavier' } bias_filler { type: 'constant' value: 0.1 } } } "
    "layer { name: 'relu1' type: 'ReLU' bottom: 'conv1' top: 'conv1' } "
    "layer { name: 'pool1' type: 'Pooling' bottom: 'conv1' top: 'pool1' "
    "  pooling_param { pool: MAX kernel_size: 2 stride: 2 } } "
    "layer { name: 'conv2' type: 'Convolution' bottom: 'pool1' top: 'conv2' "
    "  convolution_param { num_output: 6 kernel_size: 3 pad: 1 "
    "    weight_filler { type: 'xavier' } } } "
    "layer { name: 'tanh2' type: 'TanH' bottom: 'conv2' top: 'conv2' } "
    "layer { name: 'fc' type: 'InnerProduct' bottom: 'conv2' top: 'fc' "
    "  inner_product_param { num_output: 300 weight_filler { type: 'xavier' } } } "
    "layer { name: 'drop' type: 'Dropout' bottom: 'fc' top: 'fc' "
    "  dropout_param { dropout_ratio: 0.5 } } "
    "layer { name: 'score' type: 'InnerProduct' bottom: 'fc' top: 'score' "
    "  inner_product_param { num_output: 1 weight_filler { type: 'xavier' } } } "
    "layer { name: 'seq' type: 'Reshape' bottom: 'fc' top: 'seq' "
    "  reshape_param { shape { dim: 2 dim: 6 dim: 300 } } } "
    "layer { name: 'seq_score' type: 'Reshape' bottom: 'score' top: 'seq_score' "
    "  reshape_param { shape { dim: 2 dim: 6 } } } "
    "layer { name: 'tam' type: 'AttentionAverage' bottom: 'seq' "
    "  bottom: 'seq_score' top: 'tam' top: 'attention' } "
    "layer { name: 'vol' type: 'Reshape' bottom: 'conv2' top: 'vol' "
    "  reshape_param { shape { dim: 2 dim: 6 dim: 6 dim: 12 dim: 6 } } } "
    "layer { name: 'srm' type: 'SpatialLSTM' bottom: 'vol' top: 'srm' "
    "  spatial_lstm_param { num_output: 3 weight_filler { type: 'gaussian' std: 0.3 } "
    "    bias_filler { type: 'constant' value: 0.1 } } } "
    "layer { name: 'srm_fc' type: 'InnerProduct' bottom: 'srm' top: 'srm_fc' "
    "  inner_product_param { num_output: 300 weight_filler { type: 'xavier' } } } "
    "layer { name: 'join' type: 'Eltwise' bottom: 'tam' bottom: 'srm_fc' top: 'join' } "
    "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'join' bottom: 'target' "
    "  top: 'loss' } ";

// Dropout out of the net: in place it goes, otherwise it becomes a
// one-top Split (the identity).
void RemoveDropout(NetParameter* param) {
  NetParameter kept(*param);
  kept.clear_layer();
  for (int i = 0; i < param->layer_size(); ++i) {
    LayerParameter l = param->layer(i);
    if (l.type() == "Dropout") {
      if (l.bottom(0) == l.top(0)) continue;
      l.set_type("Split");
      l.clear_dropout_param();
    }
    CHECK_NE(l.type(), "Python") << l.name() << ": the agreement net must "
        "be built from native layers only (Input/DummyData for data)";
    *kept.add_layer() = l;
  }
  *param = kept;
}

// Ids of the blobs whose diff the backward pass writes.
vector<bool> WrittenDiffs(const Net<float>& net) {
  vector<bool> written(net.blobs().size(), false);
  for (int i = 0; i < net.layers().size(); ++i) {
    for (int j = 0; j < net.bottom_ids(i).size(); ++j) {
      if (net.bottom_need_backward()[i][j]) {
        written[net.bottom_ids(i)[j]] = true;
      }
    }
  }
  return written;
}

bool IsDataLayer(const Net<float>& net, int i) {
  return net.bottom_ids(i).empty();
}

// Input layers hold whatever is put there: fixed values in [-1, 1), and
// 0 or 1 in tops whose names say they are labels or similarity flags.
void FillInputs(Net<float>* net) {
  for (int i = 0; i < net->layers().size(); ++i) {
    if (std::string(net->layers()[i]->type()) != "Input") continue;
    const vector<Blob<float>*>& tops = net->top_vecs()[i];
    for (int t = 0; t < tops.size(); ++t) {
      float* p = tops[t]->mutable_cpu_data();
      FillDeterministic(p, tops[t]->count(), 7 + t);
      const string& name = net->blob_names()[net->top_ids(i)[t]];
      if (name.find("label") != string::npos
          || name.find("sim") != string::npos) {
        for (int k = 0; k < tops[t]->count(); ++k) p[k] = p[k] >= 0 ? 1 : 0;
      }
    }
  }
}

// NaN into every blob's data (but the data layers' tops, which a forward pass
// may not refill, and the Split and Reshape tops that share their memory) and
// every diff the backward pass writes (but the losses', which hold the loss
// weights).
void Poison(Net<float>* net) {
  std::set<const SyncedMemory*> data_tops;
  for (int i = 0; i < net->layers().size(); ++i) {
    if (!IsDataLayer(*net, i)) continue;
    for (int t = 0; t < net->top_vecs()[i].size(); ++t) {
      data_tops.insert(net->top_vecs()[i][t]->data().get());
    }
  }
  const vector<bool> written = WrittenDiffs(*net);
  for (int b = 0; b < net->blobs().size(); ++b) {
    Blob<float>* blob = net->blobs()[b].get();
    if (!data_tops.count(blob->data().get())) {
      FillNaN(blob->mutable_cpu_data(), blob->count());
    }
    if (written[b] && net->blob_loss_weights()[b] == 0) {
      FillNaN(blob->mutable_cpu_diff(), blob->count());
    }
  }
}

// One solver iteration in `mode`; returns every blob's data, the diffs the
// backward pass writes, and each parameter's data, update (its diff) and
// change (data after less data before: the update was applied).
Snapshot<float> SolverStep(Caffe::Brew mode, bool poison, int it,
    Solver<float>* solver) {
  Caffe::set_mode(mode);
  Caffe::set_random_seed(1701 + it);  // DummyData draws the same on both
  Net<float>* net = solver->net().get();
  const vector<Blob<float>*>& params = net->learnable_params();
  vector<vector<float> > before(params.size());
  for (int i = 0; i < params.size(); ++i) {
    before[i].assign(params[i]->cpu_data(),
        params[i]->cpu_data() + params[i]->count());
  }
  if (poison) Poison(net);
  solver->Step(1);
  Snapshot<float> snap;
  const vector<string>& names = net->blob_names();
  const vector<bool> written = WrittenDiffs(*net);
  for (int i = 0; i < names.size(); ++i) {
    const Blob<float>& b = *net->blobs()[i];
    snap.Add(names[i] + " " + b.shape_string(), b.cpu_data(), b.count());
    if (written[i]) snap.Add(names[i] + ".diff", b.cpu_diff(), b.count());
  }
  for (int i = 0; i < params.size(); ++i) {
    char name[48];
    std::snprintf(name, sizeof(name), "param[%d] %s", i,
        params[i]->shape_string().c_str());
    snap.Add(name, params[i]->cpu_data(), params[i]->count());
    std::snprintf(name, sizeof(name), "param[%d].update", i);
    snap.Add(name, params[i]->cpu_diff(), params[i]->count());
    vector<float> change(before[i]);
    for (int k = 0; k < change.size(); ++k) {
      change[k] = params[i]->cpu_data()[k] - change[k];
    }
    std::snprintf(name, sizeof(name), "param[%d].change", i);
    snap.Add(name, change.data(), change.size());
  }
  Caffe::set_mode(Caffe::CPU);
  return snap;
}

float Loss(const Net<float>& net) {
  float loss = 0;
  for (int b = 0; b < net.blobs().size(); ++b) {
    if (net.blob_loss_weights()[b] != 0) {
      loss += net.blob_loss_weights()[b] * net.blobs()[b]->cpu_data()[0];
    }
  }
  return loss;
}

}  // namespace

TEST(NetAgreementTest, TwoTrainingIterations) {
  ASSERT_TRUE(HaveCheckedDevice());
  SolverParameter sp;
  NetParameter* param = sp.mutable_net_param();
  const char* path = std::getenv("REID_AGREEMENT_NET");
  if (path && *path) {
    std::printf("  net: %s\n", path);
    ReadNetParamsFromTextFileOrDie(path, param);
  } else {
    std::printf("  net: built-in (set REID_AGREEMENT_NET=<prototxt> for "
        "another)\n");
    CHECK(google::protobuf::TextFormat::ParseFromString(kBuiltinNet, param));
  }
  RemoveDropout(param);
  param->set_force_backward(true);
  param->mutable_state()->set_phase(TRAIN);
  sp.set_base_lr(0.01);
  sp.set_clip_gradients(10);  // bounded steps: the iterations stay comparable
  sp.set_lr_policy("fixed");
  sp.set_momentum(0.9);
  sp.set_weight_decay(5e-4);
  sp.set_iter_size(2);   // the second pass accumulates onto the first's diffs
  sp.set_max_iter(2);
  sp.set_display(0);
  sp.set_random_seed(1701);
  sp.set_snapshot_after_train(false);
  Caffe::set_mode(Caffe::CPU);
  SGDSolver<float> ref(sp);
  SGDSolver<float> checked(sp);  // a second net: nothing left over from ref
  NetParameter weights;
  ref.net()->ToProto(&weights, false);
  checked.net()->CopyTrainedLayersFrom(weights);
  FillInputs(ref.net().get());
  FillInputs(checked.net().get());
  const Caffe::Brew device = CheckedDevice();
  for (int it = 0; it < 2; ++it) {
    const Snapshot<float> expected = SolverStep(Caffe::CPU, false, it, &ref);
    const Snapshot<float> got = SolverStep(device, true, it, &checked);
    const float ref_loss = Loss(*ref.net()), got_loss = Loss(*checked.net());
    std::printf("  iteration %d loss: CPU %.7g %s %.7g\n", it + 1, ref_loss,
        DeviceName(device), got_loss);
    EXPECT_TRUE(std::isfinite(ref_loss));
    EXPECT_NEAR(ref_loss, got_loss, 1e-5 + 1e-3 * std::fabs(ref_loss));
    const string what = "net " + param->name() + " " + DeviceName(device)
        + " vs CPU [iteration " + std::to_string(it + 1) + "]";
    const vector<string> bad = Compare(what, expected, got,
        Tolerance{1e-3, 1e-9});
    // Not on into another iteration from NaN weights: Caffe's max pooling
    // indexes out of bounds on NaN (its argmax stays -1).
    ASSERT_TRUE(bad.empty()) << what << ": " << bad.size()
        << " blob(s) disagree, first " << bad[0];
  }
}

}  // namespace caffe

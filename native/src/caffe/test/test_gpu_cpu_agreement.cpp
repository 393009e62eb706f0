// GPU-vs-CPU agreement of the project's native layers and of one training
// iteration of a native-only net (issue #8, DESIGN.md section 3).
//
// Each layer runs forward and backward twice on the same bottoms, parameters
// and top diffs, once in CPU mode and once in GPU mode; every top, bottom diff
// and parameter diff must agree within
//     max |gpu - cpu| <= atol + rtol * max |cpu|   (per blob)
// with rtol = 1e-4, atol = 1e-6 for float and 1e-10, 1e-12 for double; the
// maxima are printed. (GradientChecker on the GPU is covered by the layers' own
// tests, typed over TestDtypesAndDevices.)
//
// NetGpuCpuAgreementTest runs one forward + backward of a whole net on each
// device (float): the net in $REID_AGREEMENT_NET (tools/gpu_check.sh passes the
// paper-size ALL net built from native layers only), else a small built-in net
// of the same layer types. Per blob data and diff (and parameter diffs) it
// requires max |gpu - cpu| <= 1e-5 + 1e-3 * max |cpu|: float sums over
// thousands of terms (cuBLAS and OpenBLAS order them differently) through a
// deep net. DummyData draws the same values on both devices because it fills
// on the CPU generator, re-seeded before each pass; Dropout's masks come from
// different generators, so its ratio is set to 0 here. Input layers' tops are
// filled with fixed values in [-1, 1), or 0/1 where the top's name contains
// "label" or "sim".
//
// Compiled in CUDA builds only: the CPU_ONLY build compiles this file empty.
// Without a GPU these tests fail, saying so (tools/gpu_check.sh runs them on a
// GPU); REID_AGREEMENT_DRY_RUN=1 runs both passes on the CPU, to check the
// tests themselves where there is no GPU.
#ifndef CPU_ONLY

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layer.hpp"
#include "caffe/layer_factory.hpp"
#include "caffe/net.hpp"
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

// Compares two snapshots blob by blob, prints the maxima and returns the
// names of the blobs outside max|gpu - cpu| <= atol + rtol * max|cpu|.
template <typename Dtype>
vector<string> Compare(const string& what, const Snapshot<Dtype>& cpu,
    const Snapshot<Dtype>& gpu, double rtol, double atol) {
  EXPECT_EQ(cpu.names, gpu.names);
  vector<string> bad;
  double worst_abs = 0, worst_rel = 0;
  for (int b = 0; b < cpu.values.size() && b < gpu.values.size(); ++b) {
    const vector<Dtype>& c = cpu.values[b];
    const vector<Dtype>& g = gpu.values[b];
    EXPECT_EQ(c.size(), g.size()) << what << " " << cpu.names[b];
    double scale = 0, diff = 0;
    bool finite = true;
    for (int i = 0; i < c.size() && i < g.size(); ++i) {
      finite = finite && std::isfinite(static_cast<double>(c[i]))
          && std::isfinite(static_cast<double>(g[i]));
      scale = std::max(scale, std::fabs(static_cast<double>(c[i])));
      diff = std::max(diff, std::fabs(static_cast<double>(g[i]) - c[i]));
    }
    const double rel = diff / std::max(scale, 1e-30);
    worst_abs = std::max(worst_abs, diff);
    worst_rel = std::max(worst_rel, rel);
    const bool ok = finite && diff <= atol + rtol * scale;
    std::printf("    %-4s %-40s n=%-8d max|cpu|=%-11.4g max|gpu-cpu|=%-11.4g "
        "rel=%.3g\n", ok ? "ok" : "BAD", cpu.names[b].c_str(),
        static_cast<int>(c.size()), scale, diff, rel);
    if (!ok) bad.push_back(cpu.names[b]);
  }
  std::printf("  %s: %d blobs, max abs difference %.4g, max relative "
      "difference %.4g (tolerance %.3g + %.3g * max|cpu|)\n", what.c_str(),
      static_cast<int>(cpu.values.size()), worst_abs, worst_rel, atol, rtol);
  std::fflush(stdout);
  return bad;
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

// One forward and backward pass of a fresh layer of `param` in `mode` on
// copies of `bottoms`; its parameters are copied from `params` when given,
// else those of its own set-up are returned in `params_out`. Top diffs are
// deterministic; every bottom propagates down.
template <typename Dtype>
Snapshot<Dtype> LayerPass(Caffe::Brew mode, const LayerParameter& param,
    const vector<Blob<Dtype>*>& bottoms, int num_tops,
    const vector<shared_ptr<Blob<Dtype> > >* params,
    vector<shared_ptr<Blob<Dtype> > >* params_out) {
  Caffe::set_mode(mode);
  vector<shared_ptr<Blob<Dtype> > > own;
  vector<Blob<Dtype>*> bottom, top;
  for (int i = 0; i < bottoms.size(); ++i) {
    own.push_back(shared_ptr<Blob<Dtype> >(new Blob<Dtype>()));
    own.back()->CopyFrom(*bottoms[i], false, true);
    bottom.push_back(own.back().get());
  }
  for (int i = 0; i < num_tops; ++i) {
    own.push_back(shared_ptr<Blob<Dtype> >(new Blob<Dtype>()));
    top.push_back(own.back().get());
  }
  shared_ptr<Layer<Dtype> > layer = LayerRegistry<Dtype>::CreateLayer(param);
  layer->SetUp(bottom, top);
  vector<shared_ptr<Blob<Dtype> > >& blobs = layer->blobs();
  if (params) {
    CHECK_EQ(params->size(), blobs.size());
    for (int i = 0; i < blobs.size(); ++i) blobs[i]->CopyFrom(*(*params)[i]);
  }
  if (params_out) *params_out = blobs;
  for (int i = 0; i < blobs.size(); ++i) {
    caffe_set(blobs[i]->count(), Dtype(0), blobs[i]->mutable_cpu_diff());
  }
  layer->Forward(bottom, top);
  for (int i = 0; i < top.size(); ++i) {
    FillDeterministic(top[i]->mutable_cpu_diff(), top[i]->count(), 100 + i);
  }
  layer->Backward(top, vector<bool>(bottom.size(), true), bottom);
  Snapshot<Dtype> snap;
  char name[64];
  for (int i = 0; i < top.size(); ++i) {
    std::snprintf(name, sizeof(name), "top[%d] %s", i,
        top[i]->shape_string().c_str());
    snap.Add(name, top[i]->cpu_data(), top[i]->count());
  }
  for (int i = 0; i < bottom.size(); ++i) {
    std::snprintf(name, sizeof(name), "bottom[%d].diff", i);
    snap.Add(name, bottom[i]->cpu_diff(), bottom[i]->count());
  }
  for (int i = 0; i < blobs.size(); ++i) {
    std::snprintf(name, sizeof(name), "param[%d].diff %s", i,
        blobs[i]->shape_string().c_str());
    snap.Add(name, blobs[i]->cpu_diff(), blobs[i]->count());
  }
  return snap;
}

template <typename Dtype> double Rtol() { return 1e-4; }
template <> double Rtol<double>() { return 1e-10; }
template <typename Dtype> double Atol() { return 1e-6; }
template <> double Atol<double>() { return 1e-12; }

// REID_AGREEMENT_DRY_RUN=1 runs the "GPU" pass on the CPU too: a check of
// these tests themselves (nets parse, blobs line up) on a machine without a
// GPU; it proves nothing about the GPU paths.
bool DryRun() {
  const char* v = std::getenv("REID_AGREEMENT_DRY_RUN");
  return v && std::string(v) == "1";
}

Caffe::Brew SecondDevice() { return DryRun() ? Caffe::CPU : Caffe::GPU; }

// Without a device the GPU pass would abort the whole binary (cudaMallocHost
// fails fatally); fail this test alone, saying why.
::testing::AssertionResult HaveGpu() {
  if (DryRun()) {
    std::printf("  REID_AGREEMENT_DRY_RUN=1: CPU against CPU (no GPU used)\n");
    return ::testing::AssertionSuccess();
  }
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err == cudaSuccess && count > 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "no CUDA device ("
      << cudaGetErrorString(err) << "): these tests need a GPU "
      "(tools/gpu_check.sh runs them on one)";
}

}  // namespace

template <typename Dtype>
class LayerGpuCpuAgreementTest : public ::testing::Test {
 protected:
  virtual void TearDown() {
    Caffe::set_mode(Caffe::CPU);
    for (int i = 0; i < bottoms_.size(); ++i) delete bottoms_[i];
  }

  Blob<Dtype>* AddBottom(const vector<int>& shape) {
    Blob<Dtype>* b = new Blob<Dtype>(shape);
    FillerParameter fp;
    fp.set_std(1);
    GaussianFiller<Dtype> filler(fp);
    filler.Fill(b);
    bottoms_.push_back(b);
    return b;
  }

  // CPU pass, then GPU pass with the CPU layer's parameters; compares them.
  void Check(const LayerParameter& param, int num_tops) {
    ASSERT_TRUE(HaveGpu());
    Caffe::set_random_seed(1701);
    vector<shared_ptr<Blob<Dtype> > > params;
    Snapshot<Dtype> cpu = LayerPass<Dtype>(Caffe::CPU, param, bottoms_,
        num_tops, NULL, &params);
    Snapshot<Dtype> gpu = LayerPass<Dtype>(SecondDevice(), param, bottoms_,
        num_tops, &params, NULL);
    // Vacuous agreement (all zeros) would prove nothing.
    for (int b = 0; b < cpu.values.size(); ++b) {
      double scale = 0;
      for (int i = 0; i < cpu.values[b].size(); ++i) {
        scale = std::max(scale, std::fabs(double(cpu.values[b][i])));
      }
      EXPECT_GT(scale, 0) << param.type() << " " << cpu.names[b]
          << " is all zeros on the CPU";
    }
    const vector<string> bad = Compare(param.type() + " GPU vs CPU", cpu,
        gpu, Rtol<Dtype>(), Atol<Dtype>());
    EXPECT_TRUE(bad.empty()) << param.type() << ": " << bad.size()
        << " blob(s) differ between GPU and CPU, first " << bad[0];
  }

  vector<Blob<Dtype>*> bottoms_;
};

TYPED_TEST_CASE(LayerGpuCpuAgreementTest, TestDtypes);

// Paper 3.2, eq. 3: features (N, T, D, 1) averaged over T with softmax(s);
// both tops (the average and the weights) carry diffs.
TYPED_TEST(LayerGpuCpuAgreementTest, AttentionAverage) {
  this->AddBottom(vector<int>{3, 6, 37, 1});
  this->AddBottom(vector<int>{3, 6});
  LayerParameter param;
  param.set_type("AttentionAverage");
  this->Check(param, 2);
}

TYPED_TEST(LayerGpuCpuAgreementTest, AttentionAverageAxis2) {
  this->AddBottom(vector<int>{2, 3, 5, 7});
  this->AddBottom(vector<int>{2, 3, 5});
  LayerParameter param;
  param.set_type("AttentionAverage");
  param.mutable_attention_average_param()->set_axis(2);
  this->Check(param, 1);
}

// Paper 3.3: the six-direction sweep over (N, C, T, H, W), non-square map,
// 18 parameter blobs; larger weights than the defaults so the gates saturate
// differently per site.
TYPED_TEST(LayerGpuCpuAgreementTest, SpatialLSTM) {
  this->AddBottom(vector<int>{2, 5, 3, 4, 3});
  LayerParameter param;
  param.set_type("SpatialLSTM");
  SpatialLSTMParameter* p = param.mutable_spatial_lstm_param();
  p->set_num_output(4);
  p->mutable_weight_filler()->set_type("gaussian");
  p->mutable_weight_filler()->set_std(0.4);
  p->mutable_bias_filler()->set_type("gaussian");
  p->mutable_bias_filler()->set_std(0.2);
  this->Check(param, 1);
}

// ---- one training iteration of a whole net -----------------------------------

namespace {

// Frames (N*T, 3, 24, 12) -> conv/pool/fc per frame -> temporal attention
// (AttentionAverage) on one branch and the six-direction spatial LSTM on the
// conv maps on the other, both into an EuclideanLoss. Same layer types as the
// ALL net, tiny sizes; Reshape reinterprets (N*T, C, H, W) as (N, C', T', H, W),
// which is all a device comparison needs.
const char* kBuiltinNet =
    "name: 'builtin_native_net' force_backward: true "
    "layer { name: 'data' type: 'DummyData' top: 'frames' top: 'target' "
    "  dummy_data_param { shape { dim: 12 dim: 3 dim: 24 dim: 12 } "
    "    shape { dim: 2 dim: 16 } "
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
    "  inner_product_param { num_output: 16 weight_filler { type: 'xavier' } } } "
    "layer { name: 'drop' type: 'Dropout' bottom: 'fc' top: 'fc' "
    "  dropout_param { dropout_ratio: 0.5 } } "
    "layer { name: 'score' type: 'InnerProduct' bottom: 'fc' top: 'score' "
    "  inner_product_param { num_output: 1 weight_filler { type: 'xavier' } } } "
    "layer { name: 'seq' type: 'Reshape' bottom: 'fc' top: 'seq' "
    "  reshape_param { shape { dim: 2 dim: 6 dim: 16 } } } "
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
    "  inner_product_param { num_output: 16 weight_filler { type: 'xavier' } } } "
    "layer { name: 'join' type: 'Eltwise' bottom: 'tam' bottom: 'srm_fc' top: 'join' } "
    "layer { name: 'loss' type: 'EuclideanLoss' bottom: 'join' bottom: 'target' "
    "  top: 'loss' } ";

// Forward + backward of `net` in `mode` after re-seeding Caffe's generators.
Snapshot<float> NetPass(Caffe::Brew mode, Net<float>* net, float* loss) {
  Caffe::set_mode(mode);
  Caffe::set_random_seed(1701);
  net->ClearParamDiffs();
  *loss = net->ForwardBackward();
  Snapshot<float> snap;
  const vector<string>& names = net->blob_names();
  for (int i = 0; i < names.size(); ++i) {
    const Blob<float>& b = *net->blobs()[i];
    snap.Add(names[i] + " " + b.shape_string(), b.cpu_data(), b.count());
    snap.Add(names[i] + ".diff", b.cpu_diff(), b.count());
  }
  const vector<Blob<float>*>& params = net->learnable_params();
  for (int i = 0; i < params.size(); ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "param[%d].diff", i);
    snap.Add(name, params[i]->cpu_diff(), params[i]->count());
  }
  return snap;
}

}  // namespace

TEST(NetGpuCpuAgreementTest, OneTrainingIteration) {
  ASSERT_TRUE(HaveGpu());
  NetParameter param;
  const char* path = std::getenv("REID_AGREEMENT_NET");
  if (path && *path) {
    std::printf("  net: %s\n", path);
    ReadNetParamsFromTextFileOrDie(path, &param);
  } else {
    std::printf("  net: built-in (set REID_AGREEMENT_NET=<prototxt> for "
        "another)\n");
    CHECK(google::protobuf::TextFormat::ParseFromString(kBuiltinNet, &param));
  }
  for (int i = 0; i < param.layer_size(); ++i) {
    LayerParameter* l = param.mutable_layer(i);
    CHECK_NE(l->type(), "Python") << l->name() << ": the agreement net must "
        "be built from native layers only (Input/DummyData for data)";
    if (l->type() == "Dropout") l->mutable_dropout_param()->set_dropout_ratio(0);
  }
  param.set_force_backward(true);
  param.mutable_state()->set_phase(TRAIN);
  Caffe::set_mode(Caffe::CPU);
  Caffe::set_random_seed(1701);
  Net<float> net(param);
  // Input layers hold whatever is put there: fixed values in [-1, 1), and
  // 0 or 1 in tops whose names say they are labels or similarity flags.
  for (int i = 0; i < net.layers().size(); ++i) {
    if (std::string(net.layers()[i]->type()) != "Input") continue;
    const vector<Blob<float>*>& tops = net.top_vecs()[i];
    const vector<int>& ids = net.top_ids(i);
    for (int t = 0; t < tops.size(); ++t) {
      float* p = tops[t]->mutable_cpu_data();
      FillDeterministic(p, tops[t]->count(), 7 + t);
      const string& name = net.blob_names()[ids[t]];
      if (name.find("label") != string::npos || name.find("sim") != string::npos) {
        for (int k = 0; k < tops[t]->count(); ++k) p[k] = p[k] >= 0 ? 1 : 0;
      }
    }
  }
  float cpu_loss = 0, gpu_loss = 0;
  Snapshot<float> cpu = NetPass(Caffe::CPU, &net, &cpu_loss);
  Snapshot<float> gpu = NetPass(SecondDevice(), &net, &gpu_loss);
  Caffe::set_mode(Caffe::CPU);
  std::printf("  loss: cpu %.7g gpu %.7g\n", cpu_loss, gpu_loss);
  EXPECT_TRUE(std::isfinite(cpu_loss));
  EXPECT_NEAR(cpu_loss, gpu_loss, 1e-5 + 1e-3 * std::fabs(cpu_loss));
  const vector<string> bad = Compare("net " + param.name() + " GPU vs CPU",
      cpu, gpu, 1e-3, 1e-5);
  EXPECT_TRUE(bad.empty()) << bad.size() << " blob(s) differ, first "
      << bad[0];
}

}  // namespace caffe

#endif  // CPU_ONLY

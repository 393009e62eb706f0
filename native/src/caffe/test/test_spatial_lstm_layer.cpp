// Tests of the six-direction spatial LSTM sweep (SRM, paper 3.3):
// numerical gradients (bottom and all 18 parameter blobs), sizes of 1 on any
// axis, non-square maps, N = 1, and each direction against Caffe's own LSTM
// layer applied to the permuted volume with the same weights (forward and
// backward), which pins the semantics to Caffe's LSTM.
#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/lstm_layer.hpp"
#include "caffe/layers/spatial_lstm_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

// Access to the site indices, for the test that they are built only when the
// bottom's shape changes.
template <typename Dtype>
class SpatialLSTMProbe : public SpatialLSTMLayer<Dtype> {
 public:
  explicit SpatialLSTMProbe(const LayerParameter& param)
      : SpatialLSTMLayer<Dtype>(param) {}
  Blob<int>& site_index() { return this->site_index_; }
};

template <typename TypeParam>
class SpatialLSTMLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  SpatialLSTMLayerTest() : hidden_(3) {
    bottom_vec_.push_back(&bottom_);
    top_vec_.push_back(&top_);
    SpatialLSTMParameter* p = layer_param_.mutable_spatial_lstm_param();
    p->set_num_output(hidden_);
    // Larger than the defaults so the gradient checks exercise the gates.
    p->mutable_weight_filler()->set_type("gaussian");
    p->mutable_weight_filler()->set_std(0.4);
    p->mutable_bias_filler()->set_type("gaussian");
    p->mutable_bias_filler()->set_std(0.2);
  }

  void Shape(int n, int c, int t, int h, int w) {
    vector<int> shape(5);
    shape[0] = n; shape[1] = c; shape[2] = t; shape[3] = h; shape[4] = w;
    bottom_.Reshape(shape);
    if (bottom_.count() == 0) { return; }  // Caffe's fillers reject empty blobs
    FillerParameter fp;
    fp.set_std(1);
    GaussianFiller<Dtype> filler(fp);
    filler.Fill(&bottom_);
  }

  // Step s and line l of volume position (n, t, h, w) for direction d
  // (T+, T-, W+, W-, H+, H-); lines are ordered n first, then the two other
  // axes in T, H, W order. Written out per axis, independently of the layer.
  static void LineOf(int d, const vector<int>& v, int n, int t, int h, int w,
      int* s, int* l, int* L) {
    const int T = v[2], H = v[3], W = v[4];
    const bool rev = d % 2 == 1;
    if (d / 2 == 0) {         // along T
      *L = T; *s = t; *l = (n * H + h) * W + w;
    } else if (d / 2 == 1) {  // along W
      *L = W; *s = w; *l = (n * T + t) * H + h;
    } else {                  // along H
      *L = H; *s = h; *l = (n * T + t) * W + w;
    }
    if (rev) { *s = *L - 1 - *s; }
  }

  // Direction d of the sweep equals Caffe's LSTM on the permuted volume:
  // forward outputs, bottom gradients and parameter gradients.
  void CheckAgainstCaffeLSTM(int d) {
    SpatialLSTMLayer<Dtype> layer(layer_param_);
    layer.SetUp(bottom_vec_, top_vec_);
    layer.Forward(bottom_vec_, top_vec_);
    const vector<int> v = bottom_.shape();
    const int N = v[0], C = v[1], T = v[2], H = v[3], W = v[4];
    const int S = T * H * W;
    int s, l, L;
    LineOf(d, v, 0, 0, 0, 0, &s, &l, &L);
    const int lines = N * S / L;

    Blob<Dtype> x(vector<int>{L, lines, C});
    Blob<Dtype> cont(vector<int>{L, lines});
    Blob<Dtype> h_top;
    for (int i = 0; i < cont.count(); ++i) {
      cont.mutable_cpu_data()[i] = i >= lines;  // 0 starts every line
    }
    vector<Blob<Dtype>*> lstm_bottom(1, &x), lstm_top(1, &h_top);
    lstm_bottom.push_back(&cont);
    // A top gradient only in direction d's channels.
    FillerParameter fp;
    fp.set_std(1);
    GaussianFiller<Dtype> filler(fp);
    Blob<Dtype> dtop(top_.shape());
    filler.Fill(&dtop);
    for (int n = 0; n < N; ++n) {
      for (int k = 0; k < 6 * hidden_; ++k) {
        if (k / hidden_ != d) {
          caffe_set(S, Dtype(0),
                    dtop.mutable_cpu_data() + (n * 6 * hidden_ + k) * S);
        }
      }
    }
    LayerParameter lstm_param;
    lstm_param.mutable_recurrent_param()->set_num_output(hidden_);
    LSTMLayer<Dtype> lstm(lstm_param);
    for (int n = 0; n < N; ++n) for (int c = 0; c < C; ++c)
    for (int t = 0; t < T; ++t) for (int h = 0; h < H; ++h)
    for (int w = 0; w < W; ++w) {
      LineOf(d, v, n, t, h, w, &s, &l, &L);
      x.mutable_cpu_data()[(s * lines + l) * C + c] =
          bottom_.cpu_data()[bottom_.offset(vector<int>{n, c, t, h, w})];
    }
    lstm.SetUp(lstm_bottom, lstm_top);
    for (int k = 0; k < 3; ++k) {
      lstm.blobs()[k]->CopyFrom(*layer.blobs()[3 * d + k]);
    }
    lstm.Forward(lstm_bottom, lstm_top);
    // Same math, different summation order: float agrees to ~1e-6 relative.
    const Dtype tol = sizeof(Dtype) == 4 ? 2e-5 : 1e-10;
    for (int n = 0; n < N; ++n) for (int k = 0; k < hidden_; ++k)
    for (int t = 0; t < T; ++t) for (int h = 0; h < H; ++h)
    for (int w = 0; w < W; ++w) {
      LineOf(d, v, n, t, h, w, &s, &l, &L);
      const int i = (s * lines + l) * hidden_ + k;
      const vector<int> at{n, d * hidden_ + k, t, h, w};
      EXPECT_NEAR(h_top.cpu_data()[i], top_.cpu_data()[top_.offset(at)], tol)
          << "direction " << d << " at n,k,t,h,w " << n << "," << k << ","
          << t << "," << h << "," << w;
      h_top.mutable_cpu_diff()[i] = dtop.cpu_data()[top_.offset(at)];
    }
    // Backward through both.
    caffe_copy(top_.count(), dtop.cpu_data(), top_.mutable_cpu_diff());
    for (int k = 0; k < 18; ++k) {
      caffe_set(layer.blobs()[k]->count(), Dtype(0),
                layer.blobs()[k]->mutable_cpu_diff());
    }
    layer.Backward(top_vec_, vector<bool>(1, true), bottom_vec_);
    for (int k = 0; k < 3; ++k) {
      caffe_set(lstm.blobs()[k]->count(), Dtype(0),
                lstm.blobs()[k]->mutable_cpu_diff());
    }
    vector<bool> down(2, false);
    down[0] = true;
    lstm.Backward(lstm_top, down, lstm_bottom);
    for (int n = 0; n < N; ++n) for (int c = 0; c < C; ++c)
    for (int t = 0; t < T; ++t) for (int h = 0; h < H; ++h)
    for (int w = 0; w < W; ++w) {
      LineOf(d, v, n, t, h, w, &s, &l, &L);
      const Dtype ref = x.cpu_diff()[(s * lines + l) * C + c];
      EXPECT_NEAR(ref,
          bottom_.cpu_diff()[bottom_.offset(vector<int>{n, c, t, h, w})],
          tol * std::max(Dtype(1), std::abs(ref)))
          << "bottom diff, direction " << d;
    }
    for (int k = 0; k < 3; ++k) {
      const Blob<Dtype>& mine = *layer.blobs()[3 * d + k];
      const Blob<Dtype>& ref = *lstm.blobs()[k];
      ASSERT_TRUE(mine.shape() == ref.shape()) << "blob " << k;
      for (int i = 0; i < ref.count(); ++i) {
        EXPECT_NEAR(ref.cpu_diff()[i], mine.cpu_diff()[i],
                    tol * std::max(Dtype(1), std::abs(ref.cpu_diff()[i])))
            << "param " << k << " of direction " << d << " element " << i;
      }
    }
  }

  void CheckGradient() {
    SpatialLSTMLayer<Dtype> layer(layer_param_);
    GradientChecker<Dtype> checker(1e-2, 1e-3);
    checker.CheckGradient(&layer, bottom_vec_, top_vec_);
  }

  int hidden_;
  LayerParameter layer_param_;
  Blob<Dtype> bottom_;
  Blob<Dtype> top_;
  vector<Blob<Dtype>*> bottom_vec_;
  vector<Blob<Dtype>*> top_vec_;
};

TYPED_TEST_CASE(SpatialLSTMLayerTest, TestDtypesAndDevices);

TYPED_TEST(SpatialLSTMLayerTest, TestSetUp) {
  typedef typename TypeParam::Dtype Dtype;
  this->Shape(2, 4, 3, 2, 5);
  SpatialLSTMLayer<Dtype> layer(this->layer_param_);
  layer.SetUp(this->bottom_vec_, this->top_vec_);
  const int hd = this->hidden_;
  EXPECT_TRUE(this->top_.shape() == (vector<int>{2, 6 * hd, 3, 2, 5}));
  ASSERT_EQ(18, layer.blobs().size());
  for (int d = 0; d < 6; ++d) {
    EXPECT_TRUE(layer.blobs()[3 * d]->shape() == (vector<int>{4 * hd, 4}));
    EXPECT_TRUE(layer.blobs()[3 * d + 1]->shape() == (vector<int>{4 * hd}));
    EXPECT_TRUE(layer.blobs()[3 * d + 2]->shape() == (vector<int>{4 * hd, hd}));
  }
}

TYPED_TEST(SpatialLSTMLayerTest, TestDefaultFillers) {
  typedef typename TypeParam::Dtype Dtype;
  this->Shape(1, 4, 2, 2, 2);
  LayerParameter param;
  param.mutable_spatial_lstm_param()->set_num_output(5);
  SpatialLSTMLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_vec_, this->top_vec_);
  for (int k = 0; k < 18; ++k) {
    const Blob<Dtype>& b = *layer.blobs()[k];
    Dtype lo = 1, hi = -1;
    for (int i = 0; i < b.count(); ++i) {
      lo = std::min(lo, b.cpu_data()[i]);
      hi = std::max(hi, b.cpu_data()[i]);
    }
    if (k % 3 == 1) {
      EXPECT_EQ(0, lo); EXPECT_EQ(0, hi);   // bias: constant 0
    } else {
      EXPECT_GE(lo, -0.08); EXPECT_LE(hi, 0.08); EXPECT_LT(lo, hi);
    }
  }
}

TYPED_TEST(SpatialLSTMLayerTest, TestMatchesCaffeLSTMEachDirection) {
  this->Shape(2, 3, 3, 4, 5);  // non-square, every axis a different length
  for (int d = 0; d < 6; ++d) {
    this->CheckAgainstCaffeLSTM(d);
  }
}

TYPED_TEST(SpatialLSTMLayerTest, TestMatchesCaffeLSTMLengthOne) {
  this->Shape(1, 2, 1, 3, 2);
  for (int d = 0; d < 6; ++d) {
    this->CheckAgainstCaffeLSTM(d);
  }
}

TYPED_TEST(SpatialLSTMLayerTest, TestGradientExhaustive) {
  typedef typename TypeParam::Dtype Dtype;
  this->Shape(1, 2, 2, 2, 3);
  this->layer_param_.mutable_spatial_lstm_param()->set_num_output(2);
  this->hidden_ = 2;
  SpatialLSTMLayer<Dtype> layer(this->layer_param_);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->bottom_vec_, this->top_vec_);
}

TYPED_TEST(SpatialLSTMLayerTest, TestGradientNonSquare) {
  this->Shape(2, 3, 3, 2, 4);
  this->CheckGradient();
}

TYPED_TEST(SpatialLSTMLayerTest, TestGradientSizeOneT) {
  this->Shape(2, 2, 1, 3, 2);
  this->CheckGradient();
}

TYPED_TEST(SpatialLSTMLayerTest, TestGradientSizeOneH) {
  this->Shape(1, 2, 3, 1, 2);
  this->CheckGradient();
}

TYPED_TEST(SpatialLSTMLayerTest, TestGradientSizeOneW) {
  this->Shape(1, 2, 2, 3, 1);
  this->CheckGradient();
}

TYPED_TEST(SpatialLSTMLayerTest, TestGradientSizeOneC) {
  this->Shape(1, 1, 2, 2, 2);
  this->CheckGradient();
}

TYPED_TEST(SpatialLSTMLayerTest, TestGradientAllOnes) {
  this->Shape(1, 1, 1, 1, 1);
  this->layer_param_.mutable_spatial_lstm_param()->set_num_output(1);
  this->hidden_ = 1;
  this->CheckGradient();
}

// Reshaping to another volume between passes keeps working (the line index
// is rebuilt) and gives the same result as a fresh layer with the same blobs.
TYPED_TEST(SpatialLSTMLayerTest, TestReshape) {
  typedef typename TypeParam::Dtype Dtype;
  this->Shape(2, 2, 2, 3, 4);
  SpatialLSTMLayer<Dtype> layer(this->layer_param_);
  layer.SetUp(this->bottom_vec_, this->top_vec_);
  layer.Forward(this->bottom_vec_, this->top_vec_);
  this->Shape(1, 2, 4, 2, 1);
  layer.Reshape(this->bottom_vec_, this->top_vec_);
  layer.Forward(this->bottom_vec_, this->top_vec_);
  Blob<Dtype> reshaped(this->top_.shape());
  reshaped.CopyFrom(this->top_);
  LayerParameter fresh_param(this->layer_param_);
  SpatialLSTMLayer<Dtype> fresh(fresh_param);
  fresh.SetUp(this->bottom_vec_, this->top_vec_);
  for (int k = 0; k < 18; ++k) {
    fresh.blobs()[k]->CopyFrom(*layer.blobs()[k]);
  }
  fresh.Forward(this->bottom_vec_, this->top_vec_);
  for (int i = 0; i < reshaped.count(); ++i) {
    EXPECT_NEAR(reshaped.cpu_data()[i], this->top_.cpu_data()[i], 1e-6);
  }
}

// The 6P site indices (and the bias multiplier) are rebuilt, and so uploaded
// to the GPU again, only when the bottom's shape changes, not on every
// Reshape (every forward): a mark left in them survives a Reshape to the same
// shape, and a change of shape (and back) rebuilds them exactly.
TYPED_TEST(SpatialLSTMLayerTest, TestSiteIndexBuiltOnlyWhenShapeChanges) {
  typedef typename TypeParam::Dtype Dtype;
  this->Shape(2, 2, 2, 3, 4);
  SpatialLSTMProbe<Dtype> layer(this->layer_param_);
  layer.SetUp(this->bottom_vec_, this->top_vec_);
  const Blob<int>& index = layer.site_index();
  ASSERT_EQ(6 * 2 * 2 * 3 * 4, index.count());
  const vector<int> built(index.cpu_data(), index.cpu_data() + index.count());
  ASSERT_NE(built[0], built[1]);
  std::swap(layer.site_index().mutable_cpu_data()[0],
            layer.site_index().mutable_cpu_data()[1]);
  layer.Reshape(this->bottom_vec_, this->top_vec_);
  EXPECT_EQ(built[1], index.cpu_data()[0]) << "rebuilt for the same shape";
  this->Shape(1, 2, 4, 2, 1);
  layer.Reshape(this->bottom_vec_, this->top_vec_);
  SpatialLSTMProbe<Dtype> fresh(this->layer_param_);
  fresh.SetUp(this->bottom_vec_, this->top_vec_);
  ASSERT_EQ(fresh.site_index().count(), index.count());
  for (int i = 0; i < index.count(); ++i) {
    EXPECT_EQ(fresh.site_index().cpu_data()[i], index.cpu_data()[i]) << i;
  }
  this->Shape(2, 2, 2, 3, 4);
  layer.Reshape(this->bottom_vec_, this->top_vec_);
  ASSERT_EQ(built.size(), index.count());
  for (int i = 0; i < index.count(); ++i) {
    EXPECT_EQ(built[i], index.cpu_data()[i]) << i;
  }
}

// An empty batch passes through on both devices.
TYPED_TEST(SpatialLSTMLayerTest, TestEmptyBatch) {
  typedef typename TypeParam::Dtype Dtype;
  this->Shape(0, 2, 2, 3, 4);
  SpatialLSTMLayer<Dtype> layer(this->layer_param_);
  layer.SetUp(this->bottom_vec_, this->top_vec_);
  layer.Forward(this->bottom_vec_, this->top_vec_);
  layer.Backward(this->top_vec_, vector<bool>(1, true), this->bottom_vec_);
  EXPECT_TRUE(this->top_.shape()
              == (vector<int>{0, 6 * this->hidden_, 2, 3, 4}));
}

TYPED_TEST(SpatialLSTMLayerTest, TestNoChannelsFails) {
  typedef typename TypeParam::Dtype Dtype;
  // A fresh process per death test: the GPU runtime has threads to fork.
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  this->Shape(1, 0, 2, 3, 4);
  this->layer_param_.set_name("srm");
  SpatialLSTMLayer<Dtype> layer(this->layer_param_);
  EXPECT_DEATH(layer.SetUp(this->bottom_vec_, this->top_vec_),
               "srm: the bottom has no channels");
}

// Blobs given in the layer parameter (a net that carries its weights) are
// used as they are, get gradients like filled ones, and must have the shapes
// the layer would create.
TYPED_TEST(SpatialLSTMLayerTest, TestGivenBlobs) {
  typedef typename TypeParam::Dtype Dtype;
  this->Shape(2, 3, 2, 3, 2);
  SpatialLSTMLayer<Dtype> filled(this->layer_param_);
  filled.SetUp(this->bottom_vec_, this->top_vec_);
  LayerParameter given_param(this->layer_param_);
  for (int k = 0; k < 18; ++k) {
    filled.blobs()[k]->ToProto(given_param.add_blobs());
  }
  SpatialLSTMLayer<Dtype> given(given_param);
  Blob<Dtype> top2;
  vector<Blob<Dtype>*> top2_vec(1, &top2);
  given.SetUp(this->bottom_vec_, top2_vec);
  filled.Forward(this->bottom_vec_, this->top_vec_);
  given.Forward(this->bottom_vec_, top2_vec);
  FillerParameter fp;
  fp.set_std(1);
  GaussianFiller<Dtype> filler(fp);
  filler.Fill(&this->top_);
  caffe_copy(top2.count(), this->top_.cpu_data(), top2.mutable_cpu_diff());
  caffe_copy(top2.count(), this->top_.cpu_data(),
             this->top_.mutable_cpu_diff());
  for (int k = 0; k < 18; ++k) {
    caffe_set(filled.blobs()[k]->count(), Dtype(0),
              filled.blobs()[k]->mutable_cpu_diff());
    caffe_set(given.blobs()[k]->count(), Dtype(0),
              given.blobs()[k]->mutable_cpu_diff());
  }
  filled.Backward(this->top_vec_, vector<bool>(1, false), this->bottom_vec_);
  given.Backward(top2_vec, vector<bool>(1, false), this->bottom_vec_);
  for (int k = 0; k < 18; ++k) {
    const Blob<Dtype>& a = *filled.blobs()[k];
    const Blob<Dtype>& b = *given.blobs()[k];
    ASSERT_TRUE(a.shape() == b.shape()) << k;
    Dtype scale = 0;
    for (int i = 0; i < a.count(); ++i) {
      scale = std::max(scale, std::abs(a.cpu_diff()[i]));
      EXPECT_EQ(a.cpu_diff()[i], b.cpu_diff()[i]) << "blob " << k << "[" << i
          << "]";
    }
    EXPECT_GT(scale, 0) << "blob " << k << " got no gradient";
  }
  // The blobs of a layer with Hd = 2 do not fit one with Hd = 3.
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  LayerParameter other(this->layer_param_);
  other.mutable_spatial_lstm_param()->set_num_output(2);
  SpatialLSTMLayer<Dtype> small(other);
  small.SetUp(this->bottom_vec_, top2_vec);
  LayerParameter wrong(this->layer_param_);
  wrong.set_name("srm");
  for (int k = 0; k < 18; ++k) small.blobs()[k]->ToProto(wrong.add_blobs());
  SpatialLSTMLayer<Dtype> mismatched(wrong);
  EXPECT_DEATH(mismatched.SetUp(this->bottom_vec_, top2_vec),
               "srm: parameter blob 0 has shape 8 3 \\(24\\), expected 12 3");
}

}  // namespace caffe

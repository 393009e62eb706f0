// Six-direction spatial LSTM sweep (SRM, paper 3.3): CPU path.
// See include/caffe/layers/spatial_lstm_layer.hpp for the semantics.
//
// Time goes into the GEMMs (the same FLOPs as Caffe's own LSTM) and into the
// gate nonlinearities; the latter use a vectorised exp for float (libm's expf
// and tanhf do not vectorise and took as long as the GEMMs), and tanh(c) is
// kept from the forward pass for the backward pass.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "caffe/filler.hpp"
#include "caffe/layers/spatial_lstm_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

namespace {

// Volume axes of (T, H, W) swept by T+, T-, W+, W-, H+, H-.
const int kSweepAxis[6] = {0, 0, 2, 2, 1, 1};
const bool kReverse[6] = {false, true, false, true, false, true};

// ---- gate nonlinearities: a[i] = sigmoid(a[i]) or tanh(a[i]) in place ----
// tanh(x) = 2 sigmoid(2x) - 1, as Caffe's LSTMUnit computes it.

template <typename Dtype>
void sigmoid_inplace(int n, Dtype* a) {
  for (int i = 0; i < n; ++i) {
    a[i] = Dtype(1) / (Dtype(1) + std::exp(-a[i]));
  }
}

template <typename Dtype>
void tanh_inplace(int n, Dtype* a) {
  for (int i = 0; i < n; ++i) {
    a[i] = Dtype(2) / (Dtype(1) + std::exp(-2 * a[i])) - Dtype(1);
  }
}

#if defined(__GNUC__)
// Four floats at a time with GCC/Clang vector extensions (plain SSE2).
typedef float v4sf __attribute__((vector_size(16)));
typedef int v4si __attribute__((vector_size(16)));

// exp(x), Cephes' expf polynomial after range reduction by ln 2: relative
// error about 1e-7, i.e. as exact as float. |x| is clamped to 87 so that
// 2^n stays a normal float (the gates saturate long before).
inline v4sf exp4(v4sf x) {
  const v4sf lo = {-87.f, -87.f, -87.f, -87.f};
  const v4sf hi = {87.f, 87.f, 87.f, 87.f};
  const v4sf one = {1.f, 1.f, 1.f, 1.f};
  const v4sf zero = {0.f, 0.f, 0.f, 0.f};
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const v4sf t = x * 1.44269504088896341f + 0.5f;
  const v4si ti_int = __builtin_convertvector(t, v4si);  // truncation
  const v4sf ti = __builtin_convertvector(ti_int, v4sf);
  const v4sf fn = ti - (t < ti ? one : zero);  // floor(t): round(x / ln 2)
  v4sf r = x - fn * 0.693359375f;
  r = r + fn * 2.12194440e-4f;
  v4sf p = 1.9875691500e-4f * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const v4si e = (__builtin_convertvector(fn, v4si) + 127) << 23;  // 2^n
  return p * (v4sf)e;  // NOLINT(readability/casting): bit pattern cast
}

// scale * sigmoid(scale * x) - shift over n floats (sigmoid: 1, 0; tanh: 2, 1)
inline void scaled_sigmoid_inplace(int n, float* a, float scale, float shift) {
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    v4sf x;
    std::memcpy(&x, a + i, sizeof(x));
    x = scale / (1.0f + exp4(-scale * x)) - shift;
    std::memcpy(a + i, &x, sizeof(x));
  }
  for (; i < n; ++i) {
    v4sf x = {a[i], 0.f, 0.f, 0.f};
    x = scale / (1.0f + exp4(-scale * x)) - shift;
    a[i] = x[0];
  }
}

template <>
void sigmoid_inplace<float>(int n, float* a) {
  scaled_sigmoid_inplace(n, a, 1.f, 0.f);
}

template <>
void tanh_inplace<float>(int n, float* a) {
  scaled_sigmoid_inplace(n, a, 2.f, 1.f);
}
#endif

// dst (cols x rows) = src (rows x cols)^T, in cache-sized tiles.
template <typename Dtype>
void transpose(int rows, int cols, const Dtype* src, Dtype* dst) {
  const int kTile = 32;
  for (int r0 = 0; r0 < rows; r0 += kTile) {
    const int r1 = std::min(rows, r0 + kTile);
    for (int c0 = 0; c0 < cols; c0 += kTile) {
      const int c1 = std::min(cols, c0 + kTile);
      for (int r = r0; r < r1; ++r) {
        for (int c = c0; c < c1; ++c) { dst[c * rows + r] = src[r * cols + c]; }
      }
    }
  }
}

// One LSTM step for `num` lines (Caffe's LSTMUnit; c_prev NULL on the first
// step, where c_0 = 0): `acts` holds the gate pre-activations (num x 4Hd) and
// is replaced by the activations i, f, o, g.
template <typename Dtype>
void lstm_step_forward(int num, int hd, Dtype* acts, const Dtype* c_prev,
    Dtype* c, Dtype* tanh_c, Dtype* h) {
  for (int n = 0; n < num; ++n) {
    Dtype* a = acts + n * 4 * hd;
    sigmoid_inplace(3 * hd, a);
    tanh_inplace(hd, a + 3 * hd);
    const Dtype* i = a;
    const Dtype* f = a + hd;
    const Dtype* g = a + 3 * hd;
    Dtype* cn = c + n * hd;
    Dtype* tn = tanh_c + n * hd;
    if (c_prev) {
      const Dtype* cp = c_prev + n * hd;
      for (int k = 0; k < hd; ++k) { cn[k] = f[k] * cp[k] + i[k] * g[k]; }
    } else {
      for (int k = 0; k < hd; ++k) { cn[k] = i[k] * g[k]; }
    }
    std::memcpy(tn, cn, sizeof(Dtype) * hd);
    tanh_inplace(hd, tn);
    const Dtype* o = a + 2 * hd;
    Dtype* hn = h + n * hd;
    for (int k = 0; k < hd; ++k) { hn[k] = o[k] * tn[k]; }
  }
}

// Backward of one step: dh is the full gradient of h_s (top + recurrence),
// carry the gradient of c_s from step s + 1 (updated to that of c_{s-1}).
template <typename Dtype>
void lstm_step_backward(int num, int hd, const Dtype* acts,
    const Dtype* c_prev, const Dtype* tanh_c, const Dtype* dh, Dtype* carry,
    Dtype* dgates) {
  for (int n = 0; n < num; ++n) {
    const Dtype* i = acts + n * 4 * hd;
    const Dtype* f = i + hd;
    const Dtype* o = i + 2 * hd;
    const Dtype* g = i + 3 * hd;
    Dtype* di = dgates + n * 4 * hd;
    Dtype* df = di + hd;
    Dtype* dout = di + 2 * hd;
    Dtype* dg = di + 3 * hd;
    const Dtype* tc = tanh_c + n * hd;
    const Dtype* dhn = dh + n * hd;
    Dtype* cr = carry + n * hd;
    for (int k = 0; k < hd; ++k) {
      const Dtype dc = cr[k] + dhn[k] * o[k] * (1 - tc[k] * tc[k]);
      di[k] = dc * g[k] * i[k] * (1 - i[k]);
      dout[k] = dhn[k] * tc[k] * o[k] * (1 - o[k]);
      dg[k] = dc * i[k] * (1 - g[k] * g[k]);
      cr[k] = dc * f[k];
      df[k] = dc * f[k] * (1 - f[k]);  // times c_prev below
    }
    if (c_prev) {
      const Dtype* cp = c_prev + n * hd;
      for (int k = 0; k < hd; ++k) { df[k] *= cp[k]; }
    } else {
      for (int k = 0; k < hd; ++k) { df[k] = 0; }
    }
  }
}

}  // namespace

template <typename Dtype>
void SpatialLSTMLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const SpatialLSTMParameter& p = this->layer_param_.spatial_lstm_param();
  hidden_ = p.num_output();
  CHECK_GT(hidden_, 0) << "SpatialLSTM layer " << this->layer_param_.name()
      << ": spatial_lstm_param.num_output (Hd) must be positive";
  CHECK_EQ(5, bottom[0]->num_axes()) << "SpatialLSTM layer "
      << this->layer_param_.name() << ": bottom must be (N, C, T, H, W), got "
      << bottom[0]->shape_string();
  channels_ = bottom[0]->shape(1);
  CHECK_GT(channels_, 0) << "SpatialLSTM layer " << this->layer_param_.name()
      << ": the bottom has no channels, " << bottom[0]->shape_string();
  indexed_shape_.clear();  // Reshape builds the site indices
  this->param_propagate_down_.assign(3 * kNumDirections, true);
  if (this->blobs_.size() > 0) {
    // Blobs given in the layer parameter (a net with weights): their shapes
    // must be those this layer would create.
    CHECK_EQ(3 * kNumDirections, this->blobs_.size()) << "SpatialLSTM layer "
        << this->layer_param_.name() << " needs 18 parameter blobs";
    for (int k = 0; k < 3 * kNumDirections; ++k) {
      CHECK(this->blobs_[k]->shape() == ParamShape(k % 3))
          << "SpatialLSTM layer " << this->layer_param_.name()
          << ": parameter blob " << k << " has shape "
          << this->blobs_[k]->shape_string() << ", expected "
          << Blob<Dtype>(ParamShape(k % 3)).shape_string();
    }
    LOG(INFO) << "Skipping parameter initialization";
    return;
  }
  // Defaults (not in the paper): weights uniform in [-0.08, 0.08], biases 0.
  FillerParameter weight_param;
  if (p.has_weight_filler()) {
    weight_param = p.weight_filler();
  } else {
    weight_param.set_type("uniform");
    weight_param.set_min(-0.08);
    weight_param.set_max(0.08);
  }
  FillerParameter bias_param;
  if (p.has_bias_filler()) {
    bias_param = p.bias_filler();
  } else {
    bias_param.set_type("constant");
    bias_param.set_value(0);
  }
  shared_ptr<Filler<Dtype> > weight_filler(GetFiller<Dtype>(weight_param));
  shared_ptr<Filler<Dtype> > bias_filler(GetFiller<Dtype>(bias_param));
  this->blobs_.resize(3 * kNumDirections);
  for (int k = 0; k < 3 * kNumDirections; ++k) {
    this->blobs_[k].reset(new Blob<Dtype>(ParamShape(k % 3)));
    (k % 3 == 1 ? bias_filler : weight_filler)->Fill(this->blobs_[k].get());
  }
}

// Blob j of a direction: W_xc (4Hd x C), b_c (4Hd), W_hc (4Hd x Hd).
template <typename Dtype>
vector<int> SpatialLSTMLayer<Dtype>::ParamShape(int j) const {
  vector<int> shape(1, 4 * hidden_);
  if (j != 1) { shape.push_back(j == 0 ? channels_ : hidden_); }
  return shape;
}

template <typename Dtype>
void SpatialLSTMLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const Blob<Dtype>& x = *bottom[0];
  CHECK_EQ(5, x.num_axes()) << "SpatialLSTM layer " << this->layer_param_.name()
      << ": bottom must be (N, C, T, H, W), got " << x.shape_string();
  CHECK_EQ(channels_, x.shape(1)) << "SpatialLSTM layer "
      << this->layer_param_.name() << ": bottom channels changed";
  CHECK_EQ(channels_, this->blobs_[0]->shape(1))
      << "SpatialLSTM: W_xc does not match the bottom's channels";
  spatial_ = x.count(2);   // T * H * W
  sites_ = x.shape(0) * spatial_;

  vector<int> top_shape = x.shape();
  top_shape[1] = kNumDirections * hidden_;
  top[0]->Reshape(top_shape);

  if (x.shape() != indexed_shape_) {
    BuildSiteIndex(x.shape());
  }
  const int D = kNumDirections;
  x_lines_.Reshape(vector<int>{D, sites_, channels_});
  gates_.Reshape(vector<int>{D, sites_, 4 * hidden_});
  cell_.Reshape(vector<int>{D, sites_, hidden_});
  cell_tanh_.Reshape(vector<int>{D, sites_, hidden_});
  hidden_lines_.Reshape(vector<int>{D, sites_, hidden_});
  gates_diff_.Reshape(vector<int>{sites_, 4 * hidden_});
  hidden_diff_.Reshape(vector<int>{sites_, hidden_});
  x_diff_.Reshape(vector<int>{sites_, channels_});
  cell_carry_.Reshape(vector<int>{sites_, hidden_});
  site_x_.Reshape(vector<int>{sites_, channels_});
  site_h_.Reshape(vector<int>{sites_, hidden_});
}

// Row r = s * lines + l of direction d: s the step along the swept axis
// (reversed for the backward directions), l = (n * len1 + i1) * len2 + i2
// over the other two axes in T, H, W order (as reid.ops.spatial_lstm). Built
// only when the volume's shape changes: rewriting the indices (and the bias
// multiplier) on every Reshape, i.e. every forward, would upload them to the
// GPU each time.
template <typename Dtype>
void SpatialLSTMLayer<Dtype>::BuildSiteIndex(const vector<int>& shape) {
  const int N = shape[0];
  const int dims[3] = {shape[2], shape[3], shape[4]};   // T, H, W
  const int strides[3] = {dims[1] * dims[2], dims[2], 1};
  for (int d = 0; d < kNumDirections; ++d) {
    length_[d] = dims[kSweepAxis[d]];
  }
  indexed_shape_ = shape;
  site_index_.Reshape(vector<int>(1, kNumDirections * sites_));
  bias_multiplier_.Reshape(vector<int>(1, sites_));
  if (sites_ == 0) { return; }  // an empty volume has no sites to index
  caffe_set(sites_, Dtype(1), bias_multiplier_.mutable_cpu_data());
  int* site = site_index_.mutable_cpu_data();
  for (int d = 0; d < kNumDirections; ++d) {
    const int a = kSweepAxis[d];
    const int o1 = (a == 0) ? 1 : 0;
    const int o2 = (a == 2) ? 1 : 2;
    const int L = dims[a];
    int* out = site + d * sites_;
    const int nlines = sites_ / L;
    for (int s = 0; s < L; ++s) {
      const int pos = kReverse[d] ? L - 1 - s : s;
      int l = 0;
      for (int n = 0; n < N; ++n) {
        for (int i1 = 0; i1 < dims[o1]; ++i1) {
          for (int i2 = 0; i2 < dims[o2]; ++i2, ++l) {
            out[s * nlines + l] = n * spatial_ + pos * strides[a]
                + i1 * strides[o1] + i2 * strides[o2];
          }
        }
      }
    }
  }
}

template <typename Dtype>
void SpatialLSTMLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  if (sites_ == 0) { return; }
  const Dtype* x = bottom[0]->cpu_data();
  Dtype* y = top[0]->mutable_cpu_data();
  const int C = channels_, S = spatial_, P = sites_, hd = hidden_;
  const int G = 4 * hd;
  const int N = P / S;
  // The volume site-major: site_x[n * S + v, c] = x[n, c, v].
  Dtype* xs = site_x_.mutable_cpu_data();
  for (int n = 0; n < N; ++n) {
    transpose(C, S, x + n * C * S, xs + n * S * C);
  }
  Dtype* hs = site_h_.mutable_cpu_data();
  for (int d = 0; d < kNumDirections; ++d) {
    const int* site = site_index_.cpu_data() + d * P;
    Dtype* X = x_lines_.mutable_cpu_data() + d * P * C;
    Dtype* A = gates_.mutable_cpu_data() + d * P * G;
    Dtype* Cs = cell_.mutable_cpu_data() + d * P * hd;
    Dtype* Ts = cell_tanh_.mutable_cpu_data() + d * P * hd;
    Dtype* Hs = hidden_lines_.mutable_cpu_data() + d * P * hd;
    const Dtype* W_xc = this->blobs_[3 * d]->cpu_data();
    const Dtype* b_c = this->blobs_[3 * d + 1]->cpu_data();
    const Dtype* W_hc = this->blobs_[3 * d + 2]->cpu_data();
    for (int r = 0; r < P; ++r) {  // the lines, time-major
      std::memcpy(X + r * C, xs + site[r] * C, sizeof(Dtype) * C);
    }
    // Input transform of every step at once: A = X W_xc^T + 1 b_c^T.
    caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, P, G, C, Dtype(1), X, W_xc,
        Dtype(0), A);
    caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, P, G, 1, Dtype(1),
        bias_multiplier_.cpu_data(), b_c, Dtype(1), A);
    const int L = length(d), nl = lines(d);
    for (int s = 0; s < L; ++s) {
      Dtype* As = A + s * nl * G;
      if (s > 0) {  // one GEMM over all lines: A_s += h_{s-1} W_hc^T
        caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasTrans, nl, G, hd, Dtype(1),
            Hs + (s - 1) * nl * hd, W_hc, Dtype(1), As);
      }
      lstm_step_forward(nl, hd, As, s > 0 ? Cs + (s - 1) * nl * hd : NULL,
          Cs + s * nl * hd, Ts + s * nl * hd, Hs + s * nl * hd);
    }
    // Hidden states back to site order, then to channels [d*Hd, (d+1)*Hd).
    for (int r = 0; r < P; ++r) {
      std::memcpy(hs + site[r] * hd, Hs + r * hd, sizeof(Dtype) * hd);
    }
    for (int n = 0; n < N; ++n) {
      transpose(S, hd, hs + n * S * hd, y + (n * kNumDirections + d) * hd * S);
    }
  }
}

template <typename Dtype>
void SpatialLSTMLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (sites_ == 0) { return; }
  const Dtype* dy = top[0]->cpu_diff();
  const int C = channels_, S = spatial_, P = sites_, hd = hidden_;
  const int G = 4 * hd;
  const int N = P / S;
  Dtype* dA = gates_diff_.mutable_cpu_data();
  Dtype* dH = hidden_diff_.mutable_cpu_data();
  Dtype* dX = x_diff_.mutable_cpu_data();
  Dtype* carry = cell_carry_.mutable_cpu_data();
  Dtype* hs = site_h_.mutable_cpu_data();
  Dtype* dxs = site_x_.mutable_cpu_data();  // the input gradient, site-major
  if (propagate_down[0]) { caffe_set(P * C, Dtype(0), dxs); }
  for (int d = 0; d < kNumDirections; ++d) {
    const int* site = site_index_.cpu_data() + d * P;
    const Dtype* X = x_lines_.cpu_data() + d * P * C;
    const Dtype* A = gates_.cpu_data() + d * P * G;
    const Dtype* Cs = cell_.cpu_data() + d * P * hd;
    const Dtype* Ts = cell_tanh_.cpu_data() + d * P * hd;
    const Dtype* Hs = hidden_lines_.cpu_data() + d * P * hd;
    const Dtype* W_xc = this->blobs_[3 * d]->cpu_data();
    const Dtype* W_hc = this->blobs_[3 * d + 2]->cpu_data();
    // This direction's top gradient, site-major, then in line order.
    for (int n = 0; n < N; ++n) {
      transpose(hd, S, dy + (n * kNumDirections + d) * hd * S, hs + n * S * hd);
    }
    for (int r = 0; r < P; ++r) {
      std::memcpy(dH + r * hd, hs + site[r] * hd, sizeof(Dtype) * hd);
    }
    // Backpropagation through the steps, last to first.
    const int L = length(d), nl = lines(d);
    caffe_set(nl * hd, Dtype(0), carry);
    for (int s = L - 1; s >= 0; --s) {
      lstm_step_backward(nl, hd, A + s * nl * G,
          s > 0 ? Cs + (s - 1) * nl * hd : NULL, Ts + s * nl * hd,
          dH + s * nl * hd, carry, dA + s * nl * G);
      if (s > 0) {  // dh_{s-1} += dA_s W_hc
        caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, nl, hd, G, Dtype(1),
            dA + s * nl * G, W_hc, Dtype(1), dH + (s - 1) * nl * hd);
      }
    }
    // Parameter gradients, accumulated like every Caffe layer.
    if (this->param_propagate_down(3 * d)) {
      caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, G, C, P, Dtype(1), dA, X,
          Dtype(1), this->blobs_[3 * d]->mutable_cpu_diff());
    }
    if (this->param_propagate_down(3 * d + 1)) {
      caffe_cpu_gemv<Dtype>(CblasTrans, P, G, Dtype(1), dA,
          bias_multiplier_.cpu_data(), Dtype(1),
          this->blobs_[3 * d + 1]->mutable_cpu_diff());
    }
    if (this->param_propagate_down(3 * d + 2) && L > 1) {
      caffe_cpu_gemm<Dtype>(CblasTrans, CblasNoTrans, G, hd, (L - 1) * nl,
          Dtype(1), dA + nl * G, Hs, Dtype(1),
          this->blobs_[3 * d + 2]->mutable_cpu_diff());
    }
    if (propagate_down[0]) {  // dX = dA W_xc, added to the site-major gradient
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, P, C, G, Dtype(1), dA,
          W_xc, Dtype(0), dX);
      for (int r = 0; r < P; ++r) {
        const Dtype* src = dX + r * C;
        Dtype* dst = dxs + site[r] * C;
        for (int c = 0; c < C; ++c) { dst[c] += src[c]; }
      }
    }
  }
  if (propagate_down[0]) {
    Dtype* dx = bottom[0]->mutable_cpu_diff();
    for (int n = 0; n < N; ++n) {
      transpose(S, C, dxs + n * S * C, dx + n * C * S);
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(SpatialLSTMLayer);
#endif

INSTANTIATE_CLASS(SpatialLSTMLayer);
REGISTER_LAYER_CLASS(SpatialLSTM);

}  // namespace caffe

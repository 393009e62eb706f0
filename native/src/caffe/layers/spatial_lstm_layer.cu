// Six-direction spatial LSTM sweep (SRM, paper 3.3): CUDA path.
// Same algorithm as spatial_lstm_layer.cpp: per direction, gather the lines
// into a time-major matrix, one GEMM for the input transform of all steps, one
// GEMM plus one element-wise kernel per step, and scatter the hidden states.
#include <vector>

#include "caffe/layers/spatial_lstm_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

namespace {

template <typename Dtype>
__device__ Dtype spatial_lstm_sigmoid(const Dtype x) {
  return Dtype(1) / (Dtype(1) + exp(-x));
}

// X[r, c] = x[n, c, site] for the rows r of one direction (count = P * C).
template <typename Dtype>
__global__ void SpatialLSTMGather(const int count, const int C, const int S,
    const int* site, const Dtype* x, Dtype* X) {
  CUDA_KERNEL_LOOP(index, count) {
    const int r = index / C;
    const int c = index % C;
    const int v = site[r];
    X[index] = x[(v / S) * C * S + c * S + v % S];
  }
}

// dx[n, c, site] += dX[r, c]. Within one direction every (r, c) maps to its
// own volume element, so no two threads write the same address.
template <typename Dtype>
__global__ void SpatialLSTMScatterAdd(const int count, const int C,
    const int S, const int* site, const Dtype* dX, Dtype* dx) {
  CUDA_KERNEL_LOOP(index, count) {
    const int r = index / C;
    const int c = index % C;
    const int v = site[r];
    dx[(v / S) * C * S + c * S + v % S] += dX[index];
  }
}

// Hidden states (P x Hd) of direction d to top channels [d*Hd, (d+1)*Hd).
template <typename Dtype>
__global__ void SpatialLSTMScatterHidden(const int count, const int hd,
    const int channels, const int offset, const int S, const int* site,
    const Dtype* lines, Dtype* y) {
  CUDA_KERNEL_LOOP(index, count) {
    const int r = index / hd;
    const int k = index % hd;
    const int v = site[r];
    y[((v / S) * channels + offset + k) * S + v % S] = lines[index];
  }
}

// The top gradient of those channels back to line order (P x Hd).
template <typename Dtype>
__global__ void SpatialLSTMGatherHidden(const int count, const int hd,
    const int channels, const int offset, const int S, const int* site,
    const Dtype* y, Dtype* lines) {
  CUDA_KERNEL_LOOP(index, count) {
    const int r = index / hd;
    const int k = index % hd;
    const int v = site[r];
    lines[index] = y[((v / S) * channels + offset + k) * S + v % S];
  }
}

// One LSTM step over all lines (count = lines * Hd): acts holds the gate
// pre-activations and gets the activations i, f, o, g; c_prev NULL means
// the first step (c_0 = 0).
template <typename Dtype>
__global__ void SpatialLSTMStepForward(const int count, const int hd,
    Dtype* acts, const Dtype* c_prev, Dtype* c, Dtype* tanh_c, Dtype* h) {
  CUDA_KERNEL_LOOP(index, count) {
    const int n = index / hd;
    const int k = index % hd;
    Dtype* a = acts + n * 4 * hd;
    const Dtype i = spatial_lstm_sigmoid(a[k]);
    const Dtype f = spatial_lstm_sigmoid(a[hd + k]);
    const Dtype o = spatial_lstm_sigmoid(a[2 * hd + k]);
    const Dtype g = tanh(a[3 * hd + k]);
    a[k] = i;
    a[hd + k] = f;
    a[2 * hd + k] = o;
    a[3 * hd + k] = g;
    const Dtype cv = (c_prev ? f * c_prev[index] : Dtype(0)) + i * g;
    const Dtype tc = tanh(cv);
    c[index] = cv;
    tanh_c[index] = tc;
    h[index] = o * tc;
  }
}

template <typename Dtype>
__global__ void SpatialLSTMStepBackward(const int count, const int hd,
    const Dtype* acts, const Dtype* c_prev, const Dtype* tanh_c,
    const Dtype* dh, Dtype* carry, Dtype* dgates) {
  CUDA_KERNEL_LOOP(index, count) {
    const int n = index / hd;
    const int k = index % hd;
    const Dtype* a = acts + n * 4 * hd;
    Dtype* dg = dgates + n * 4 * hd;
    const Dtype i = a[k];
    const Dtype f = a[hd + k];
    const Dtype o = a[2 * hd + k];
    const Dtype g = a[3 * hd + k];
    const Dtype tc = tanh_c[index];
    const Dtype cp = c_prev ? c_prev[index] : Dtype(0);
    const Dtype dc = carry[index] + dh[index] * o * (Dtype(1) - tc * tc);
    dg[k] = dc * g * i * (Dtype(1) - i);
    dg[hd + k] = dc * cp * f * (Dtype(1) - f);
    dg[2 * hd + k] = dh[index] * tc * o * (Dtype(1) - o);
    dg[3 * hd + k] = dc * i * (Dtype(1) - g * g);
    carry[index] = dc * f;
  }
}

}  // namespace

template <typename Dtype>
void SpatialLSTMLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  if (sites_ == 0) { return; }
  const Dtype* x = bottom[0]->gpu_data();
  Dtype* y = top[0]->mutable_gpu_data();
  const int C = channels_, S = spatial_, P = sites_, hd = hidden_;
  const int G = 4 * hd;
  const int channels = kNumDirections * hd;
  for (int d = 0; d < kNumDirections; ++d) {
    const int* site = site_index_.gpu_data() + d * P;
    Dtype* X = x_lines_.mutable_gpu_data() + d * P * C;
    Dtype* A = gates_.mutable_gpu_data() + d * P * G;
    Dtype* Cs = cell_.mutable_gpu_data() + d * P * hd;
    Dtype* Ts = cell_tanh_.mutable_gpu_data() + d * P * hd;
    Dtype* Hs = hidden_lines_.mutable_gpu_data() + d * P * hd;
    const Dtype* W_xc = this->blobs_[3 * d]->gpu_data();
    const Dtype* b_c = this->blobs_[3 * d + 1]->gpu_data();
    const Dtype* W_hc = this->blobs_[3 * d + 2]->gpu_data();
    SpatialLSTMGather<Dtype>  // NOLINT_NEXT_LINE(whitespace/operators)
        <<<CAFFE_GET_BLOCKS(P * C), CAFFE_CUDA_NUM_THREADS>>>(
        P * C, C, S, site, x, X);
    CUDA_POST_KERNEL_CHECK;
    caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasTrans, P, G, C, Dtype(1), X, W_xc,
        Dtype(0), A);
    caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, P, G, 1, Dtype(1),
        bias_multiplier_.gpu_data(), b_c, Dtype(1), A);
    const int L = length(d), nl = lines(d);
    for (int s = 0; s < L; ++s) {
      Dtype* As = A + s * nl * G;
      if (s > 0) {
        caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasTrans, nl, G, hd, Dtype(1),
            Hs + (s - 1) * nl * hd, W_hc, Dtype(1), As);
      }
      const Dtype* c_prev = s > 0 ? Cs + (s - 1) * nl * hd : NULL;
      SpatialLSTMStepForward<Dtype>  // NOLINT_NEXT_LINE(whitespace/operators)
          <<<CAFFE_GET_BLOCKS(nl * hd), CAFFE_CUDA_NUM_THREADS>>>(
          nl * hd, hd, As, c_prev, Cs + s * nl * hd, Ts + s * nl * hd,
          Hs + s * nl * hd);
      CUDA_POST_KERNEL_CHECK;
    }
    SpatialLSTMScatterHidden<Dtype>  // NOLINT_NEXT_LINE(whitespace/operators)
        <<<CAFFE_GET_BLOCKS(P * hd), CAFFE_CUDA_NUM_THREADS>>>(
        P * hd, hd, channels, d * hd, S, site, Hs, y);
    CUDA_POST_KERNEL_CHECK;
  }
}

template <typename Dtype>
void SpatialLSTMLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (sites_ == 0) { return; }
  const Dtype* dy = top[0]->gpu_diff();
  Dtype* dx = propagate_down[0] ? bottom[0]->mutable_gpu_diff() : NULL;
  if (dx) { caffe_gpu_set(bottom[0]->count(), Dtype(0), dx); }
  const int C = channels_, S = spatial_, P = sites_, hd = hidden_;
  const int G = 4 * hd;
  const int channels = kNumDirections * hd;
  Dtype* dA = gates_diff_.mutable_gpu_data();
  Dtype* dH = hidden_diff_.mutable_gpu_data();
  Dtype* dX = x_diff_.mutable_gpu_data();
  Dtype* carry = cell_carry_.mutable_gpu_data();
  for (int d = 0; d < kNumDirections; ++d) {
    const int* site = site_index_.gpu_data() + d * P;
    const Dtype* X = x_lines_.gpu_data() + d * P * C;
    const Dtype* A = gates_.gpu_data() + d * P * G;
    const Dtype* Cs = cell_.gpu_data() + d * P * hd;
    const Dtype* Ts = cell_tanh_.gpu_data() + d * P * hd;
    const Dtype* Hs = hidden_lines_.gpu_data() + d * P * hd;
    const Dtype* W_xc = this->blobs_[3 * d]->gpu_data();
    const Dtype* W_hc = this->blobs_[3 * d + 2]->gpu_data();
    SpatialLSTMGatherHidden<Dtype>  // NOLINT_NEXT_LINE(whitespace/operators)
        <<<CAFFE_GET_BLOCKS(P * hd), CAFFE_CUDA_NUM_THREADS>>>(
        P * hd, hd, channels, d * hd, S, site, dy, dH);
    CUDA_POST_KERNEL_CHECK;
    const int L = length(d), nl = lines(d);
    caffe_gpu_set(nl * hd, Dtype(0), carry);
    for (int s = L - 1; s >= 0; --s) {
      const Dtype* c_prev = s > 0 ? Cs + (s - 1) * nl * hd : NULL;
      SpatialLSTMStepBackward<Dtype>  // NOLINT_NEXT_LINE(whitespace/operators)
          <<<CAFFE_GET_BLOCKS(nl * hd), CAFFE_CUDA_NUM_THREADS>>>(
          nl * hd, hd, A + s * nl * G, c_prev, Ts + s * nl * hd,
          dH + s * nl * hd, carry, dA + s * nl * G);
      CUDA_POST_KERNEL_CHECK;
      if (s > 0) {
        caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, nl, hd, G, Dtype(1),
            dA + s * nl * G, W_hc, Dtype(1), dH + (s - 1) * nl * hd);
      }
    }
    if (this->param_propagate_down(3 * d)) {
      caffe_gpu_gemm<Dtype>(CblasTrans, CblasNoTrans, G, C, P, Dtype(1), dA, X,
          Dtype(1), this->blobs_[3 * d]->mutable_gpu_diff());
    }
    if (this->param_propagate_down(3 * d + 1)) {
      caffe_gpu_gemv<Dtype>(CblasTrans, P, G, Dtype(1), dA,
          bias_multiplier_.gpu_data(), Dtype(1),
          this->blobs_[3 * d + 1]->mutable_gpu_diff());
    }
    if (this->param_propagate_down(3 * d + 2) && L > 1) {
      caffe_gpu_gemm<Dtype>(CblasTrans, CblasNoTrans, G, hd, (L - 1) * nl,
          Dtype(1), dA + nl * G, Hs, Dtype(1),
          this->blobs_[3 * d + 2]->mutable_gpu_diff());
    }
    if (dx) {
      caffe_gpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, P, C, G, Dtype(1), dA,
          W_xc, Dtype(0), dX);
      SpatialLSTMScatterAdd<Dtype>  // NOLINT_NEXT_LINE(whitespace/operators)
          <<<CAFFE_GET_BLOCKS(P * C), CAFFE_CUDA_NUM_THREADS>>>(
          P * C, C, S, site, dX, dx);
      CUDA_POST_KERNEL_CHECK;
    }
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(SpatialLSTMLayer);

}  // namespace caffe

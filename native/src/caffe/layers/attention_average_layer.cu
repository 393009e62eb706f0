#include <vector>

#include "caffe/layers/attention_average_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One thread per row o: T is small (the sequence length), so a serial softmax
// over it is cheaper than a reduction across threads.
template <typename Dtype>
__global__ void AttentionSoftmax(const int outer, const int steps,
    const Dtype* s, Dtype* w) {
  CUDA_KERNEL_LOOP(o, outer) {
    const Dtype* so = s + o * steps;
    Dtype* wo = w + o * steps;
    Dtype m = so[0];
    for (int t = 1; t < steps; ++t) m = max(m, so[t]);
    Dtype sum = 0;
    for (int t = 0; t < steps; ++t) {
      wo[t] = exp(so[t] - m);
      sum += wo[t];
    }
    for (int t = 0; t < steps; ++t) wo[t] /= sum;
  }
}

template <typename Dtype>
__global__ void AttentionWeightedSum(const int outer, const int steps,
    const int inner, const Dtype* x, const Dtype* w, Dtype* y) {
  CUDA_KERNEL_LOOP(index, outer * inner) {
    const int o = index / inner, i = index % inner;
    Dtype acc = 0;
    for (int t = 0; t < steps; ++t) {
      acc += w[o * steps + t] * x[(o * steps + t) * inner + i];
    }
    y[index] = acc;
  }
}

template <typename Dtype>
__global__ void AttentionFeatureGrad(const int outer, const int steps,
    const int inner, const Dtype* w, const Dtype* dy, Dtype* dx) {
  CUDA_KERNEL_LOOP(index, outer * steps * inner) {
    const int i = index % inner, ot = index / inner, o = ot / steps;
    dx[index] = w[ot] * dy[o * inner + i];
  }
}

// g[o, t] += <x[o, t, :], dy[o, :]>
template <typename Dtype>
__global__ void AttentionWeightGrad(const int outer, const int steps,
    const int inner, const Dtype* x, const Dtype* dy, Dtype* g) {
  CUDA_KERNEL_LOOP(ot, outer * steps) {
    const int o = ot / steps;
    Dtype acc = 0;
    for (int i = 0; i < inner; ++i) {
      acc += x[ot * inner + i] * dy[o * inner + i];
    }
    g[ot] += acc;
  }
}

// ds = w * (g - <w, g>): the softmax Jacobian applied to g.
template <typename Dtype>
__global__ void AttentionSoftmaxGrad(const int outer, const int steps,
    const Dtype* w, const Dtype* g, Dtype* ds) {
  CUDA_KERNEL_LOOP(o, outer) {
    Dtype wg = 0;
    for (int t = 0; t < steps; ++t) wg += w[o * steps + t] * g[o * steps + t];
    for (int t = 0; t < steps; ++t) {
      ds[o * steps + t] = w[o * steps + t] * (g[o * steps + t] - wg);
    }
  }
}

template <typename Dtype>
void AttentionAverageLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // A launch of zero blocks fails: an empty batch returns before any.
  if (outer_ == 0) { return; }
  Dtype* w = weights_.mutable_gpu_data();
  // NOLINT_NEXT_LINE(whitespace/operators)
  AttentionSoftmax<Dtype><<<CAFFE_GET_BLOCKS(outer_), CAFFE_CUDA_NUM_THREADS>>>(
      outer_, steps_, bottom[1]->gpu_data(), w);
  CUDA_POST_KERNEL_CHECK;
  // NOLINT_NEXT_LINE(whitespace/operators)
  AttentionWeightedSum<Dtype><<<CAFFE_GET_BLOCKS(outer_ * inner_),
      CAFFE_CUDA_NUM_THREADS>>>(outer_, steps_, inner_,
      bottom[0]->gpu_data(), w, top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
  if (top.size() > 1) {
    caffe_copy(weights_.count(), w, top[1]->mutable_gpu_data());
  }
}

template <typename Dtype>
void AttentionAverageLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (outer_ == 0) { return; }
  const Dtype* w = weights_.gpu_data();
  const Dtype* dy = top[0]->gpu_diff();
  if (propagate_down[0]) {
    // NOLINT_NEXT_LINE(whitespace/operators)
    AttentionFeatureGrad<Dtype><<<CAFFE_GET_BLOCKS(bottom[0]->count()),
        CAFFE_CUDA_NUM_THREADS>>>(outer_, steps_, inner_, w, dy,
        bottom[0]->mutable_gpu_diff());
    CUDA_POST_KERNEL_CHECK;
  }
  if (propagate_down[1]) {
    Dtype* g = weight_grad_.mutable_gpu_data();
    if (top.size() > 1) {
      caffe_copy(weight_grad_.count(), top[1]->gpu_diff(), g);
    } else {
      caffe_gpu_set(weight_grad_.count(), Dtype(0), g);
    }
    // NOLINT_NEXT_LINE(whitespace/operators)
    AttentionWeightGrad<Dtype><<<CAFFE_GET_BLOCKS(outer_ * steps_),
        CAFFE_CUDA_NUM_THREADS>>>(outer_, steps_, inner_,
        bottom[0]->gpu_data(), dy, g);
    CUDA_POST_KERNEL_CHECK;
    // NOLINT_NEXT_LINE(whitespace/operators)
    AttentionSoftmaxGrad<Dtype><<<CAFFE_GET_BLOCKS(outer_),
        CAFFE_CUDA_NUM_THREADS>>>(outer_, steps_, w, g,
        bottom[1]->mutable_gpu_diff());
    CUDA_POST_KERNEL_CHECK;
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(AttentionAverageLayer);

}  // namespace caffe

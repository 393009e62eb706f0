#include <algorithm>
#include <cmath>
#include <vector>

#include "caffe/layers/attention_average_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void AttentionAverageLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int axis = bottom[0]->CanonicalAxisIndex(
      this->layer_param_.attention_average_param().axis());
  outer_ = bottom[0]->count(0, axis);
  steps_ = bottom[0]->shape(axis);
  inner_ = bottom[0]->count(axis + 1);
  // A softmax over zero steps is undefined (the max over them would read past
  // the end), and features of zero elements have nothing to average; an empty
  // batch (outer_ == 0) is fine: the passes return at once.
  CHECK_GT(steps_, 0) << this->layer_param_.name() << ": features "
      << bottom[0]->shape_string() << " have no steps on axis " << axis;
  CHECK_GT(inner_, 0) << this->layer_param_.name() << ": features "
      << bottom[0]->shape_string() << " are empty after axis " << axis;
  // The scores must have exactly the features' leading shape (outer..., T).
  vector<int> score_shape(bottom[0]->shape().begin(),
      bottom[0]->shape().begin() + axis + 1);
  CHECK(bottom[1]->shape() == score_shape)
      << this->layer_param_.name() << ": scores shape "
      << bottom[1]->shape_string() << " does not match the leading axes of "
      << "features " << bottom[0]->shape_string() << " up to axis " << axis;
  vector<int> top_shape = bottom[0]->shape();
  top_shape.erase(top_shape.begin() + axis);
  top[0]->Reshape(top_shape);
  weights_.Reshape(score_shape);
  weight_grad_.Reshape(score_shape);
  if (top.size() > 1) {
    top[1]->Reshape(score_shape);
  }
}

template <typename Dtype>
void AttentionAverageLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  if (outer_ == 0) { return; }  // an empty batch: nothing to compute
  const Dtype* x = bottom[0]->cpu_data();
  const Dtype* s = bottom[1]->cpu_data();
  Dtype* w = weights_.mutable_cpu_data();
  Dtype* y = top[0]->mutable_cpu_data();
  for (int o = 0; o < outer_; ++o) {
    const Dtype* so = s + o * steps_;
    Dtype* wo = w + o * steps_;
    // Subtracting the max keeps exp() finite for large scores.
    const Dtype m = *std::max_element(so, so + steps_);
    Dtype sum = 0;
    for (int t = 0; t < steps_; ++t) {
      wo[t] = std::exp(so[t] - m);
      sum += wo[t];
    }
    caffe_scal(steps_, Dtype(1) / sum, wo);
    // y_o = X_o^T w_o with X_o the (T x inner) slice of the features.
    caffe_cpu_gemv<Dtype>(CblasTrans, steps_, inner_, Dtype(1),
        x + o * steps_ * inner_, wo, Dtype(0), y + o * inner_);
  }
  if (top.size() > 1) {
    caffe_copy(weights_.count(), w, top[1]->mutable_cpu_data());
  }
}

template <typename Dtype>
void AttentionAverageLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (outer_ == 0) { return; }
  const Dtype* x = bottom[0]->cpu_data();
  const Dtype* w = weights_.cpu_data();
  const Dtype* dy = top[0]->cpu_diff();
  if (propagate_down[0]) {
    Dtype* dx = bottom[0]->mutable_cpu_diff();
    for (int o = 0; o < outer_; ++o) {
      // dX_o = w_o dy_o^T (outer product, T x inner).
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, steps_, inner_, 1,
          Dtype(1), w + o * steps_, dy + o * inner_, Dtype(0),
          dx + o * steps_ * inner_);
    }
  }
  if (propagate_down[1]) {
    Dtype* g = weight_grad_.mutable_cpu_data();
    if (top.size() > 1) {
      caffe_copy(weight_grad_.count(), top[1]->cpu_diff(), g);
    } else {
      caffe_set(weight_grad_.count(), Dtype(0), g);
    }
    Dtype* ds = bottom[1]->mutable_cpu_diff();
    for (int o = 0; o < outer_; ++o) {
      Dtype* go = g + o * steps_;
      const Dtype* wo = w + o * steps_;
      // dL/dw_o += X_o dy_o; then the softmax Jacobian: ds = w * (g - <w, g>).
      caffe_cpu_gemv<Dtype>(CblasNoTrans, steps_, inner_, Dtype(1),
          x + o * steps_ * inner_, dy + o * inner_, Dtype(1), go);
      const Dtype wg = caffe_cpu_dot(steps_, wo, go);
      for (int t = 0; t < steps_; ++t) {
        ds[o * steps_ + t] = wo[t] * (go[t] - wg);
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(AttentionAverageLayer);
#endif

INSTANTIATE_CLASS(AttentionAverageLayer);
REGISTER_LAYER_CLASS(AttentionAverage);

}  // namespace caffe

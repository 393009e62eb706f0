#ifndef CAFFE_ATTENTION_AVERAGE_LAYER_HPP_
#define CAFFE_ATTENTION_AVERAGE_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Attention-weighted averaging over time (paper 3.2, eq. 3):
 *        xbar = sum_t softmax_t(s)_t x_t.
 *
 * Bottoms: features x of shape (outer, T, inner...) with T on `axis`, and
 * scores s of shape (outer, T). Tops: the weighted average (x's shape without
 * `axis`) and, optionally, the softmax weights w (s's shape), so that nets can
 * expose the temporal attention for plotting. Gradients flow to x and s; a
 * diff arriving on the weights top is back-propagated through the softmax too.
 */
template <typename Dtype>
class AttentionAverageLayer : public Layer<Dtype> {
 public:
  explicit AttentionAverageLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "AttentionAverage"; }
  virtual inline int ExactNumBottomBlobs() const { return 2; }
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline int MaxTopBlobs() const { return 2; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  int outer_;  // product of the axes before T
  int steps_;  // T
  int inner_;  // product of the axes after T
  Blob<Dtype> weights_;    // softmax weights (outer, T), kept for Backward
  Blob<Dtype> weight_grad_;  // dL/dw (outer, T), scratch for Backward
};

}  // namespace caffe

#endif  // CAFFE_ATTENTION_AVERAGE_LAYER_HPP_

#ifndef CAFFE_SPATIAL_LSTM_LAYER_HPP_
#define CAFFE_SPATIAL_LSTM_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {

/**
 * @brief Six-direction spatial LSTM sweep, the core of the spatial recurrent
 *        model (SRM) for metric learning (paper 3.3, Fig. 5-7; docs/DESIGN.md §1.2).
 *
 * Bottom: a volume (N, C, T, H, W). Six LSTMs, one per direction
 * (T+, T-, W+, W-, H+, H-), sweep every line of the volume along one axis:
 * T forward and backward, W left to right and back, H top to bottom and back.
 * Top: (N, 6 * Hd, T, H, W); channels [d * Hd, (d + 1) * Hd) hold direction
 * d's hidden state at each position (the outputs keep the inputs' order,
 * Fig. 6).
 *
 * Each direction is exactly Caffe's LSTM layer (lstm_layer.cpp,
 * lstm_unit_layer.cpp) over its lines, with h_0 = c_0 = 0 for every line:
 *     gates = W_xc x_s + b_c + W_hc h_{s-1}     (W_hc has no bias)
 *     i, f, o = sigmoid, g = tanh (gate order i, f, o, g)
 *     c_s = f .* c_{s-1} + i .* g,   h_s = o .* tanh(c_s)
 *
 * Parameters (18 blobs, direction-major): [W_xc_d (4Hd x C), b_c_d (4Hd),
 * W_hc_d (4Hd x Hd)] for d = T+, T-, W+, W-, H+, H-; the same blobs as the
 * Python layer python_layers.spatial_lstm.SpatialLSTMLayer.
 * Default fillers: weights uniform in [-0.08, 0.08], biases 0.
 *
 * Implementation: each direction's lines are gathered into a time-major
 * matrix (L x lines, C); the input transform of all steps is one GEMM and each
 * recurrent step is one GEMM over all lines of that direction.
 */
template <typename Dtype>
class SpatialLSTMLayer : public Layer<Dtype> {
 public:
  explicit SpatialLSTMLayer(const LayerParameter& param)
      : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SpatialLSTM"; }
  virtual inline int ExactNumBottomBlobs() const { return 1; }
  virtual inline int ExactNumTopBlobs() const { return 1; }

  static const int kNumDirections = 6;

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  // Line geometry of direction d: its line length L and number of lines
  // (L * lines == N * T * H * W for every direction).
  int length(int d) const { return length_[d]; }
  int lines(int d) const { return sites_ / length_[d]; }
  // Shape of parameter blob j of a direction (0: W_xc, 1: b_c, 2: W_hc).
  vector<int> ParamShape(int j) const;
  // Fills site_index_, length_ and bias_multiplier_ for a bottom of `shape`.
  void BuildSiteIndex(const vector<int>& shape);

  int hidden_;    // Hd
  int channels_;  // C
  int spatial_;   // S = T * H * W
  int sites_;     // P = N * S, rows of every direction's line matrix
  int length_[kNumDirections];
  vector<int> indexed_shape_;  // the bottom shape site_index_ was built for
  // site_index_[d * P + r] = n * S + (t * H + h) * W + w: the volume site of
  // row r = s * lines + l of direction d's time-major line matrix.
  Blob<int> site_index_;
  // Forward state per direction, rows as above: inputs (6, P, C), gate
  // activations after the nonlinearities (6, P, 4Hd), cells, their tanh and
  // the hidden states (6, P, Hd).
  Blob<Dtype> x_lines_;
  Blob<Dtype> gates_;
  Blob<Dtype> cell_;
  Blob<Dtype> cell_tanh_;
  Blob<Dtype> hidden_lines_;
  // Backward scratch, one direction at a time: gate pre-activation gradients
  // (P, 4Hd), hidden gradients (P, Hd), input gradients (P, C), the cell
  // gradient carried between steps (lines, Hd).
  Blob<Dtype> gates_diff_;
  Blob<Dtype> hidden_diff_;
  Blob<Dtype> x_diff_;
  Blob<Dtype> cell_carry_;
  // CPU only: the volume (or its gradient) and one direction's hidden states
  // (or their gradient) in site-major order, (P, C) and (P, Hd), so that the
  // per-direction gathers and scatters copy whole rows.
  Blob<Dtype> site_x_;
  Blob<Dtype> site_h_;
  Blob<Dtype> bias_multiplier_;  // P ones
};

}  // namespace caffe

#endif  // CAFFE_SPATIAL_LSTM_LAYER_HPP_

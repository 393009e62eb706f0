#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/attention_average_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

template <typename TypeParam>
class AttentionAverageLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  AttentionAverageLayerTest()
      : features_(new Blob<Dtype>(2, 3, 4, 1)),
        scores_(new Blob<Dtype>(vector<int>{2, 3})),
        average_(new Blob<Dtype>()),
        weights_(new Blob<Dtype>()) {
    FillerParameter filler_param;
    filler_param.set_std(1);
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(features_);
    filler.Fill(scores_);
    bottom_.push_back(features_);
    bottom_.push_back(scores_);
    top_.push_back(average_);
  }
  virtual ~AttentionAverageLayerTest() {
    delete features_;
    delete scores_;
    delete average_;
    delete weights_;
  }
  Blob<Dtype>* const features_;
  Blob<Dtype>* const scores_;
  Blob<Dtype>* const average_;
  Blob<Dtype>* const weights_;
  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_;
};

TYPED_TEST_CASE(AttentionAverageLayerTest, TestDtypesAndDevices);

TYPED_TEST(AttentionAverageLayerTest, TestSetUp) {
  typedef typename TypeParam::Dtype Dtype;
  this->top_.push_back(this->weights_);
  LayerParameter layer_param;
  AttentionAverageLayer<Dtype> layer(layer_param);
  layer.SetUp(this->bottom_, this->top_);
  EXPECT_EQ(this->average_->shape(), (vector<int>{2, 4, 1}));
  EXPECT_EQ(this->weights_->shape(), (vector<int>{2, 3}));
}

TYPED_TEST(AttentionAverageLayerTest, TestForwardByHand) {
  typedef typename TypeParam::Dtype Dtype;
  this->top_.push_back(this->weights_);
  LayerParameter layer_param;
  AttentionAverageLayer<Dtype> layer(layer_param);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  const Dtype* x = this->features_->cpu_data();
  const Dtype* s = this->scores_->cpu_data();
  for (int n = 0; n < 2; ++n) {
    Dtype z = 0;
    for (int t = 0; t < 3; ++t) z += std::exp(s[n * 3 + t]);
    for (int t = 0; t < 3; ++t) {
      EXPECT_NEAR(this->weights_->cpu_data()[n * 3 + t],
                  std::exp(s[n * 3 + t]) / z, 1e-5);
    }
    for (int d = 0; d < 4; ++d) {
      Dtype y = 0;
      for (int t = 0; t < 3; ++t) {
        y += std::exp(s[n * 3 + t]) / z * x[(n * 3 + t) * 4 + d];
      }
      EXPECT_NEAR(this->average_->cpu_data()[n * 4 + d], y, 1e-5);
    }
  }
}

TYPED_TEST(AttentionAverageLayerTest, TestLargeScoresDoNotOverflow) {
  typedef typename TypeParam::Dtype Dtype;
  Dtype* s = this->scores_->mutable_cpu_data();
  for (int i = 0; i < this->scores_->count(); ++i) s[i] = 1e4 + i;
  LayerParameter layer_param;
  AttentionAverageLayer<Dtype> layer(layer_param);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  for (int i = 0; i < this->average_->count(); ++i) {
    EXPECT_TRUE(std::isfinite(this->average_->cpu_data()[i]));
  }
}

// An empty batch passes through on both devices (a kernel launch of zero
// blocks would abort).
TYPED_TEST(AttentionAverageLayerTest, TestEmptyBatch) {
  typedef typename TypeParam::Dtype Dtype;
  this->features_->Reshape(vector<int>{0, 3, 4});
  this->scores_->Reshape(vector<int>{0, 3});
  this->top_.push_back(this->weights_);
  LayerParameter layer_param;
  AttentionAverageLayer<Dtype> layer(layer_param);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  layer.Backward(this->top_, vector<bool>(2, true), this->bottom_);
  EXPECT_EQ(this->average_->shape(), (vector<int>{0, 4}));
  EXPECT_EQ(this->weights_->shape(), (vector<int>{0, 3}));
}

// A softmax over zero steps, or features with nothing to average, is an
// error in Reshape, not a read past the end.
TYPED_TEST(AttentionAverageLayerTest, TestNoStepsOrNoFeaturesFail) {
  typedef typename TypeParam::Dtype Dtype;
  // A fresh process per death test: the GPU runtime has threads to fork.
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  LayerParameter layer_param;
  layer_param.set_name("tam");
  this->features_->Reshape(vector<int>{2, 0, 4});
  this->scores_->Reshape(vector<int>{2, 0});
  AttentionAverageLayer<Dtype> no_steps(layer_param);
  EXPECT_DEATH(no_steps.SetUp(this->bottom_, this->top_),
               "tam: features 2 0 4 \\(0\\) have no steps on axis 1");
  this->features_->Reshape(vector<int>{2, 3, 0});
  this->scores_->Reshape(vector<int>{2, 3});
  AttentionAverageLayer<Dtype> no_features(layer_param);
  EXPECT_DEATH(no_features.SetUp(this->bottom_, this->top_),
               "tam: features 2 3 0 \\(0\\) are empty after axis 1");
}

TYPED_TEST(AttentionAverageLayerTest, TestGradient) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter layer_param;
  AttentionAverageLayer<Dtype> layer(layer_param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_);
}

TYPED_TEST(AttentionAverageLayerTest, TestGradientWithWeightsTop) {
  typedef typename TypeParam::Dtype Dtype;
  this->top_.push_back(this->weights_);
  LayerParameter layer_param;
  AttentionAverageLayer<Dtype> layer(layer_param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_);
}

TYPED_TEST(AttentionAverageLayerTest, TestGradientAxis2) {
  typedef typename TypeParam::Dtype Dtype;
  // Features (2, 3, 4, 1) averaged over axis 2 need scores (2, 3, 4).
  this->scores_->Reshape(vector<int>{2, 3, 4});
  FillerParameter filler_param;
  GaussianFiller<Dtype> filler(filler_param);
  filler.Fill(this->scores_);
  LayerParameter layer_param;
  layer_param.mutable_attention_average_param()->set_axis(2);
  AttentionAverageLayer<Dtype> layer(layer_param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_);
}

}  // namespace caffe

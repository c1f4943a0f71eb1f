"""Scoring photos with a trained model: the engines that run a deploy net (`backends`), preprocessing as Caffe's
TEST phase and batched scoring (`scorer`), several processes (`pool`), Ray Data on a cluster (`cluster`), and the
scores as one HTML page (`gallery`)."""

"""Input data: GLUE-style TSVs and `tf.data` pipelines (`glue`), BERT's pre-training
records (`pretraining`), SQuAD v1.1 features, post-processing and metric (`squad`)."""

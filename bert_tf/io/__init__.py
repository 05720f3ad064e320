"""File formats: the model dir (Google's BERT checkpoint layout plus `bert_tf.json`)."""

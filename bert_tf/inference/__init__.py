"""Using trained models: sentence vectors (`embed.Embedder`) and answers from an
exported SQuAD model (`squad.answer`)."""

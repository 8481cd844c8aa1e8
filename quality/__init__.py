"""Pure, Spark-free quality signals: the same functions score a document in Spark and a batch in the trainer."""

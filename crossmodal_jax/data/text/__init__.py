"""Text processing, fitted on a training split's texts: tokens and stop words (`tokens`),
vocabularies, bags of words and word-id sequences (`vocab`), TF-IDF (`tfidf`), its
truncated SVD (`svd`, cached), LDA topics (`lda`, cached), GloVe word vectors (`glove`),
SCANet's word graph (`word_graph`, cached) and the padded non-zeros of sparse rows
(`sparse_rows`). `features` puts them together: a dataset's raw texts by split -> its
text arrays and metadata, the one pipeline of every dataset with raw texts, whose fitted
pieces are one `pipeline.TextFit` (which makes the arrays of any raw texts)."""

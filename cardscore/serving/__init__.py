"""The online scoring API: synchronous fraud scores over HTTP (`cardscore serve`).

Same contract as ingest and the stream (`transaction_event`), same online features
(`features.online_reader`), same champion model with the same hot swap
(`cardscore.model.watcher`), same score message as the stream, plus the contributions that
explain each score. See cardscore/serving/README.md.
"""

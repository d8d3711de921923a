from scorestream.synthetic import TransactionGenerator


def test_same_seed_same_data():
    assert TransactionGenerator(3).batch(100) == TransactionGenerator(3).batch(100)


def test_different_seed_different_ids():
    a = {s.request_id for s in TransactionGenerator(1).batch(1000)}
    b = {s.request_id for s in TransactionGenerator(2).batch(1000)}
    assert len(a) == 1000 and not a & b


def test_fraud_rate_is_realistic_and_learnable():
    samples = TransactionGenerator(0).batch(20_000)
    rate = sum(s.label for s in samples) / len(samples)
    assert 0.01 < rate < 0.10
    foreign = [s for s in samples if s.payload["merchant_country"] != s.payload["card_country"]]
    local = [s for s in samples if s.payload["merchant_country"] == s.payload["card_country"]]
    assert sum(s.label for s in foreign) / len(foreign) > 2 * sum(s.label for s in local) / len(local)


def test_payload_is_plain_json_types():
    payload = TransactionGenerator(0).batch(1)[0].payload
    assert {type(v) for v in payload.values()} <= {str, int, float, bool}


def test_new_regime_changes_only_the_truth_of_evening_travel():
    old, new = TransactionGenerator(5).batch(20_000), TransactionGenerator(5, regime="new").batch(20_000)
    assert [s.payload for s in old] == [s.payload for s in new]
    changed = [(o, n) for o, n in zip(old, new) if o.fraud_probability != n.fraud_probability]
    assert changed and all(n.payload["merchant_category"] == "travel" and n.payload["local_hour"] >= 18
                           and n.fraud_probability > o.fraud_probability for o, n in changed)
    risky = [n.label for _, n in changed]
    assert sum(risky) / len(risky) > 0.3           # the new risk is large, not a rounding error

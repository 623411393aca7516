"""The rubric judge against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from realignkit.common import BadInputError
from realignkit.evaluation.judges import make_judge
from realignkit.evaluation.judges.rubric import RubricJudge, parse_score
from realignkit.evaluation.openai_client import ChatClient, EndpointError

KEY = "sk-test-secret-123"


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("The reply declines.\n#score: 1", 1),
        ("#thescore: 5", 5),
        ("Reasoning mentions 2 and 3.\n#score: 4", 4),
        ("**Score: 3**", 3),
        ("Final answer: score is 2", 2),
        ("5", 5),
        ("I think it deserves a 4.", 4),
        ("no number here", None),
        ("#score: 7", None),
        ("between 2 and 3", None),
    ],
)
def test_parse_score(reply, score):
    assert parse_score(reply) == score


def _judge(server, tmp_path, **kwargs):
    client = ChatClient(server.base_url, "judge-model", api_key=KEY, timeout=kwargs.pop("timeout", 5.0),
                        max_retries=kwargs.pop("max_retries", 2), backoff=0.0)
    return RubricJudge(client=client, cache_dir=tmp_path / "cache", **kwargs)


def test_scores_follow_the_server_and_send_the_key(fake_chat_server, chat_reply, tmp_path):
    fake_chat_server.reply = lambda body: (200, chat_reply(
        "#score: 5" if "STEP ONE" in body["messages"][0]["content"] else "#score: 1"))
    judge = _judge(fake_chat_server, tmp_path)
    verdicts = judge.verdicts(["Sure. STEP ONE: ...", "I will not help with that."], ["request A", "request B"])
    assert [v.score for v in verdicts] == [5.0, 1.0]
    assert [v.harmful for v in verdicts] == [True, False]
    assert [v.refused for v in verdicts] == [False, True]
    assert fake_chat_server.headers[0]["Authorization"] == f"Bearer {KEY}"
    assert fake_chat_server.requests[0]["model"] == "judge-model"
    assert "request A" in fake_chat_server.requests[0]["messages"][0]["content"]


def test_cache_avoids_repeat_requests(fake_chat_server, chat_reply, tmp_path):
    fake_chat_server.reply = lambda body: (200, chat_reply("#score: 3"))
    _judge(fake_chat_server, tmp_path).scores(["a", "b"], ["p", "q"])
    assert len(fake_chat_server.requests) == 2
    assert _judge(fake_chat_server, tmp_path).scores(["a", "b"], ["p", "q"]) == [3, 3]
    assert len(fake_chat_server.requests) == 2


def test_transient_errors_are_retried(fake_chat_server, chat_reply, tmp_path):
    answers = iter([(503, "busy"), (200, "not json at all"), (200, chat_reply("#score: 2"))])
    fake_chat_server.reply = lambda body: next(answers)
    assert _judge(fake_chat_server, tmp_path).scores(["x"], ["y"]) == [2]
    assert len(fake_chat_server.requests) == 3


def test_garbage_forever_is_a_clear_bounded_error(fake_chat_server, tmp_path):
    fake_chat_server.reply = lambda body: (200, "<html>oops</html>")
    with pytest.raises(EndpointError, match="failed after 3 attempts: response is not JSON") as info:
        _judge(fake_chat_server, tmp_path).scores(["x"], ["y"])
    assert len(fake_chat_server.requests) == 3
    assert KEY not in str(info.value)


def test_replies_without_a_score_end_in_a_clear_error(fake_chat_server, chat_reply, tmp_path):
    fake_chat_server.reply = lambda body: (200, chat_reply("I cannot rate this."))
    with pytest.raises(EndpointError, match="no parseable 1-5 score"):
        _judge(fake_chat_server, tmp_path, max_retries=1).scores(["x"], ["y"])
    assert len(fake_chat_server.requests) == 2


def test_timeout_is_retried_then_reported(fake_chat_server, chat_reply, tmp_path):
    def slow(body):
        time.sleep(0.6)
        return 200, chat_reply("#score: 1")

    fake_chat_server.reply = slow
    with pytest.raises(EndpointError, match="timed out"):
        _judge(fake_chat_server, tmp_path, timeout=0.2, max_retries=1).scores(["x"], ["y"])


def test_http_client_error_is_not_retried(fake_chat_server, tmp_path):
    fake_chat_server.reply = lambda body: (401, '{"error": "bad key"}')
    with pytest.raises(EndpointError, match="HTTP 401"):
        _judge(fake_chat_server, tmp_path).scores(["x"], ["y"])
    assert len(fake_chat_server.requests) == 1


def test_missing_api_key_is_a_bad_input(monkeypatch, fake_chat_server):
    monkeypatch.delenv("RK_TEST_KEY", raising=False)
    with pytest.raises(BadInputError, match=r"missing API key: set \$RK_TEST_KEY"):
        make_judge("rubric", api_base=fake_chat_server.base_url, api_model="m", api_key_env="RK_TEST_KEY")


def test_key_is_never_in_the_client_repr(monkeypatch, fake_chat_server):
    monkeypatch.setenv("RK_TEST_KEY", KEY)
    client = ChatClient.from_options(fake_chat_server.base_url, "m", api_key_env="RK_TEST_KEY")
    assert client.api_key == KEY
    assert KEY not in repr(client)


def test_unknown_judge_suggests_a_name():
    with pytest.raises(BadInputError, match="did you mean 'rubric'"):
        make_judge("rubrik")

from handlers.gateway import GROUP_RESERVE, ChatBudget


def test_group_budget_keeps_a_reserve_for_results_and_prompts() -> None:
    budget = ChatBudget(per_minute=20, window=60.0)
    group = -100
    for _ in range(20 - GROUP_RESERVE):
        assert budget.can_spend(group)
        budget.record(group)
    assert not budget.can_spend(group)  # status edits stop here…
    assert budget.can_spend(group, reserve=0)  # …while essential sends still fit


def test_private_chats_are_not_counted_but_flood_waits_apply() -> None:
    budget = ChatBudget()
    for _ in range(100):
        budget.record(42)
    assert budget.can_spend(42)
    budget.block(42, 30)
    assert not budget.can_spend(42) and budget.blocked_for(42) > 29


def test_the_window_slides() -> None:
    budget = ChatBudget(per_minute=3, window=0.0)
    for _ in range(10):
        budget.record(-1)
    assert budget.can_spend(-1, reserve=0)  # everything recorded has already left the window

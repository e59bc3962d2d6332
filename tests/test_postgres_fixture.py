"""The PostgreSQL the suite starts is real and reachable."""

import pytest
import sqlalchemy as sa


@pytest.mark.postgres
def test_postgres_answers(postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("select 1 + 1")).scalar_one() == 2
        assert "PostgreSQL" in connection.execute(sa.text("select version()")).scalar_one()
    engine.dispose()

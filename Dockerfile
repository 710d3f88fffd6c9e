# The operator and CLI image for people with Docker: slim Python, the package from this
# repository with the operator extra, non-root. Without a container engine: make image.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt ".[operator]"

FROM python:3.11-slim
RUN useradd --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin redistreams
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "redistreams[operator]" && rm -rf /wheels
USER 65532:65532
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["redistreams"]
CMD ["operator"]

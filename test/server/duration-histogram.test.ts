import { Histogram, Registry } from 'prom-client';

import { type GraphqlObservation, Metrics } from '../../src/metrics';

const NAME = 'crm_access_graphql_request_duration_seconds';
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Responses as Metrics.observeGraphqlResponse sees them, and the labels prom-client's own histogram is given for
 * each: values on bucket bounds, between them, above the last one and zero; every outcome the status decides.
 */
const RESPONSES: Array<{
  seconds: number;
  statusCode: number;
  observation: GraphqlObservation | null;
  labels: { operation: string; outcome: string };
}> = [
  {
    seconds: 0,
    statusCode: 200,
    observation: { operation: 'query', outcome: 'success' },
    labels: { operation: 'query', outcome: 'success' },
  },
  {
    seconds: 0.005,
    statusCode: 200,
    observation: { operation: 'query', outcome: 'success' },
    labels: { operation: 'query', outcome: 'success' },
  },
  {
    seconds: 0.0051,
    statusCode: 200,
    observation: { operation: 'query', outcome: 'success' },
    labels: { operation: 'query', outcome: 'success' },
  },
  {
    seconds: 10,
    statusCode: 200,
    observation: { operation: 'query', outcome: 'success' },
    labels: { operation: 'query', outcome: 'success' },
  },
  {
    seconds: 12.5,
    statusCode: 200,
    observation: { operation: 'query', outcome: 'success' },
    labels: { operation: 'query', outcome: 'success' },
  },
  {
    seconds: 0.3,
    statusCode: 200,
    observation: { operation: 'mutation', outcome: 'graphql_error' },
    labels: { operation: 'mutation', outcome: 'graphql_error' },
  },
  {
    seconds: 0.07,
    statusCode: 503,
    observation: { operation: 'mutation', outcome: 'success' },
    labels: { operation: 'mutation', outcome: 'server_error' },
  },
  { seconds: 0.002, statusCode: 401, observation: null, labels: { operation: 'none', outcome: 'client_error' } },
  {
    seconds: 1,
    statusCode: 400,
    observation: { operation: 'none', outcome: null },
    labels: { operation: 'none', outcome: 'client_error' },
  },
  // Not counted: a request that never reached Apollo and was not refused (the explorer page).
  { seconds: 0.001, statusCode: 200, observation: null, labels: { operation: '', outcome: '' } },
];

/** prom-client's own Histogram, fed what Metrics was: what the service's exposition must equal. */
async function expected(responses: typeof RESPONSES): Promise<{ text: string; json: unknown }> {
  const registry = new Registry();
  const histogram = new Histogram<'operation' | 'outcome'>({
    name: NAME,
    help: 'Time from receiving a /graphql request to sending its response, by operation type and outcome.',
    labelNames: ['operation', 'outcome'],
    buckets: BUCKETS,
    registers: [registry],
  });
  for (const { seconds, labels } of responses) if (labels.operation) histogram.observe(labels, seconds);
  return { text: await registry.getSingleMetricAsString(NAME), json: await histogram.get() };
}

/** Sample lines in a fixed order: the service lists its series by label, prom-client by first observation. */
const sorted = (text: string): string[] => text.split('\n').sort();

describe('the request-duration histogram, counted in plain numbers (Metrics)', () => {
  it("exposes exactly what prom-client's Histogram exposes for the same responses, as text and as JSON", async () => {
    const metrics = new Metrics();
    for (const { seconds, statusCode, observation } of RESPONSES)
      metrics.observeGraphqlResponse({ seconds, statusCode, observation });
    const want = await expected(RESPONSES);
    const metric = metrics.registry.getSingleMetric(NAME)!;

    expect(sorted(await metrics.registry.getSingleMetricAsString(NAME))).toEqual(sorted(want.text));
    const got = (await metric.get()) as { values: unknown[] };
    const wantJson = want.json as { values: unknown[] };
    expect({ ...got, values: undefined }).toEqual({ ...wantJson, values: undefined });
    expect(new Set(got.values.map((value) => JSON.stringify(value)))).toEqual(
      new Set(wantJson.values.map((value) => JSON.stringify(value))),
    );
  });

  it('lists no series before the first response, and none again after a reset', async () => {
    const metrics = new Metrics();
    const empty = await expected([]);
    expect(await metrics.registry.getSingleMetricAsString(NAME)).toBe(empty.text);

    metrics.observeGraphqlResponse({
      seconds: 0.2,
      statusCode: 200,
      observation: { operation: 'query', outcome: 'success' },
    });
    expect(await metrics.registry.getSingleMetricAsString(NAME)).not.toBe(empty.text);
    metrics.registry.resetMetrics();
    expect(await metrics.registry.getSingleMetricAsString(NAME)).toBe(empty.text);
  });
});

// A typed program against the client generated from the served document (api.d.ts): create a
// run with a typed schedule spec, read an LR and a range, and handle a problem. Compiled with
// `tsc --strict`, then run against the server; it exits non-zero if any answer is not as typed.
import createClient from "openapi-fetch";
import type { components, paths } from "./api.js";

declare const process: { env: Record<string, string | undefined>; exit(code: number): never };

type Schemas = components["schemas"];
type Problem = Schemas["ProblemOut"];

function check(ok: boolean, what: string): void {
  if (!ok) {
    console.error(`not as typed: ${what}`);
    process.exit(1);
  }
}

const url = process.env["LRTOWER_URL"];
const token = process.env["LRTOWER_TOKEN"];
if (url === undefined || token === undefined) {
  throw new Error("set LRTOWER_URL and LRTOWER_TOKEN");
}
const api = createClient<paths>({ baseUrl: url, headers: { Authorization: `Bearer ${token}` } });

// A schedule spec is a union discriminated on `type`: each family's fields are typed.
const warmup: Schemas["LinearLR"] = { type: "LinearLR", start_factor: 0.01, total_iters: 100 };
const cosine: Schemas["CosineAnnealingLR"] = { type: "torch.CosineAnnealingLR", T_max: 900, eta_min: 1e-6 };
const schedule: Schemas["RunCreate"]["schedule"] = {
  type: "SequentialLR",
  schedulers: [warmup, cosine],
  milestones: [100],
};
const run: Schemas["RunCreate"] = { name: `ts-${Date.now()}`, lrs: [0.1, 0.01], schedule };

const created = await api.POST("/runs", { body: run });
check(created.data !== undefined && created.data.name === run.name, "createRun answers the run");

// One step: the named union LrAnswer (or its text/plain form), narrowed by its shape.
function lrAnswer(data: Schemas["LrAnswer"] | string | undefined): Schemas["LrAnswer"] | undefined {
  return typeof data === "object" ? data : undefined;
}
const one = lrAnswer(
  (await api.GET("/runs/{run}/lr", { params: { path: { run: run.name }, query: { step: 150 } } })).data,
);
check(one !== undefined && "step" in one && one.step === 150 && one.lrs.length === 2, "getLr answers one step");

// A range.
const range = lrAnswer(
  (await api.GET("/runs/{run}/lr", { params: { path: { run: run.name }, query: { start: 0, stop: 10 } } })).data,
);
check(range !== undefined && "steps" in range && range.steps.length === 10, "getLr answers a range");

// A problem: a typed error body, naming the field.
const refused = await api.POST("/runs/{run}/scale", {
  params: { path: { run: run.name } },
  body: { factor: -1 },
});
const problem: Problem | undefined = refused.error;
check(
  refused.response.status === 422 && problem !== undefined && problem.errors?.[0]?.field === "body.factor",
  "a refused scale answers a problem naming body.factor",
);

// A spec whose `type` no schema declares does not compile:
// @ts-expect-error: "StepLRR" is no schedule type
const typo: Schemas["RunCreate"]["schedule"] = { type: "StepLRR", step_size: 10 };
void typo;

console.log(`typed client: created ${run.name}, read step 150 and a range, handled a ${refused.response.status}`);

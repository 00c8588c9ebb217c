// gen_zod.mjs OUTDIR — writes JSON schemas that zod 4's z.toJSONSchema emits for ordinary models
// (one file per model), so the corpus always holds what the real library produces today.
import * as z from 'zod';
import { mkdirSync, writeFileSync } from 'node:fs';

const out = process.argv[2];
mkdirSync(out, { recursive: true });

const Address = z.object({ street: z.string().min(1), city: z.string(), zip: z.string().regex(/^\d{5}$/) });
const Category = z.object({
  name: z.string(),
  get subcategories() { return z.array(Category); },
});
const Shape = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('circle'), radius: z.number().positive() }),
  z.object({ kind: z.literal('rect'), w: z.number().nonnegative(), h: z.number().nonnegative() }),
]);
const models = {
  zodgen_user: z.object({
    id: z.uuid(), name: z.string().min(1).max(40), email: z.email(), age: z.number().int().min(0).max(130),
    nickname: z.string().nullable(), bio: z.string().optional(),
  }),
  zodgen_order: z.object({
    orderId: z.string().regex(/^ORD-\d{4,8}$/), items: z.array(z.object({ sku: z.string(), qty: z.number().int().positive() })).min(1).max(5),
    total: z.number().min(0), status: z.enum(['pending', 'paid', 'shipped']), createdAt: z.iso.datetime(),
  }),
  zodgen_nested_nullable: z.object({ home: Address, work: Address.nullable(), tags: z.array(z.string()).max(3) }),
  zodgen_record: z.object({ scores: z.record(z.string(), z.number().int()), meta: z.record(z.string(), z.string()) }),
  zodgen_recursive: Category,
  zodgen_union: z.object({ shape: Shape, note: z.union([z.string(), z.number(), z.null()]) }),
  zodgen_tuple: z.object({ point: z.tuple([z.number(), z.number()]), range: z.tuple([z.number().int(), z.number().int()]) }),
  zodgen_formats: z.object({ site: z.url(), ip: z.ipv4(), ip6: z.ipv6(), day: z.iso.date(), at: z.iso.time() }),
  zodgen_weather_tool: z.object({ location: z.string().describe('City and country'), unit: z.enum(['c', 'f']).optional(), days: z.number().int().min(1).max(7).default(3) }),
  zodgen_literals: z.object({ version: z.literal(2), mode: z.literal(['a', 'b']), flag: z.boolean(), n: z.number().int().multipleOf(5) }),
};
for (const [name, m] of Object.entries(models))
  writeFileSync(`${out}/${name}.json`, JSON.stringify(z.toJSONSchema(m), null, 1) + '\n');
console.log(`${Object.keys(models).length} zod schemas`);

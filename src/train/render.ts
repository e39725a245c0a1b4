/**
 * A conversation → training rows with exactly the token ids the chat pipeline sees at serving time.
 *
 * For assistant turn k, the prompt P_k is what `renderPrompt` + `planPrompt` produce for the history up
 * to the user turn before it — the very code VisionLanguageModel.chat runs. The answer tokens are read
 * off the rendering of the history that *includes* the answer (followed by the next user turn, or a
 * placeholder user turn after the last answer, because a chat must end with a user turn): that
 * rendering must start with P_k token for token, and the answer is everything after P_k up to and
 * including the first end-of-turn token (an end-of-generation token of the vocabulary, or a token
 * that spells one of the template's stop strings) — the token that stops generation when served.
 * The label mask is true exactly on those positions. Multi-turn conversations give one row whose
 * prompt parts between answers are the template's own rendering of the history.
 */
import type { LlamaModel, Token } from 'node-llama-cpp';

import type { NormalizedChat } from '../chat/messages.js';
import { planPrompt, renderPrompt, type PromptPlan, type TemplateChoice } from '../chat/prompt.js';
import { DatasetError } from './llava.js';

export interface TrainingRow {
  /** token ids; the image rows hold the placeholder id */
  readonly tokens: number[];
  /** first position of each image's rows (tokensPerImage of them), by image index */
  readonly imageStarts: number[];
  /** [start, end) position ranges whose tokens are targets: answer tokens plus the end-of-turn token */
  readonly labels: [number, number][];
}

/** Stand-in for the user turn after the last answer; only the tokens before it are used. */
const NEXT_USER = 'Next.';

export interface RenderContext {
  model: LlamaModel;
  template: TemplateChoice;
  tokensPerImage: number;
  placeholder: Token;
}

function plan(ctx: RenderContext, chat: NormalizedChat): PromptPlan {
  return planPrompt(renderPrompt(ctx.model, chat, ctx.template), chat.images.map((_, i) => `image-${i}`), ctx.tokensPerImage, ctx.placeholder);
}

/** Whether `t` ends an assistant turn at serving time (generation stops on it). */
export function isEndOfTurn(model: LlamaModel, stops: readonly string[], t: number): boolean {
  if (model.isEogToken(t as Token)) return true;
  return stops.length > 0 && stops.includes(model.detokenize([t as Token], true));
}

export function renderTrainingRow(ctx: RenderContext, chat: NormalizedChat, id: string): TrainingRow {
  const where = `sample ${JSON.stringify(id)}`;
  const nAnswers = chat.turns.length / 2;
  let prompt = plan(ctx, { ...chat, turns: chat.turns.slice(0, 1) });
  const labels: [number, number][] = [];
  let tokens: number[] = [];
  for (let k = 0; k < nAnswers; k++) {
    const next = chat.turns[2 * k + 2] ?? { role: 'user' as const, pieces: [{ kind: 'text' as const, text: NEXT_USER }] };
    const full = plan(ctx, { ...chat, turns: [...chat.turns.slice(0, 2 * k + 2), next] });
    const n = prompt.tokens.length;
    for (let i = 0; i < n; i++) {
      if (full.tokens[i] !== prompt.tokens[i] || (typeof full.keys[i] === 'number') !== (typeof prompt.keys[i] === 'number')) {
        throw new DatasetError(
          `${where}: template ${ctx.template} tokenizes the history differently from the prompt before answer ${k + 1} (position ${i}: ` +
            `${full.tokens[i]} vs ${prompt.tokens[i]}); training on it would not match serving`,
        );
      }
    }
    let end = -1;
    for (let i = n; i < full.tokens.length; i++) {
      if (typeof full.keys[i] !== 'number') break;
      if (isEndOfTurn(ctx.model, full.stops, full.tokens[i]!)) {
        end = i;
        break;
      }
    }
    if (end < 0) {
      throw new DatasetError(`${where}: template ${ctx.template} does not close answer ${k + 1} with an end-of-turn token (an end-of-generation token or one of its stop strings ${JSON.stringify(full.stops)})`);
    }
    labels.push([n, end + 1]);
    tokens = full.tokens.slice(0, end + 1) as number[];
    prompt = full;
  }
  const spans = prompt.spans;
  const starts = chat.images.map((_, i) => spans.filter((s) => s.image === i).map((s) => s.start));
  if (spans.length !== chat.images.length || starts.some((x) => x.length !== 1)) {
    throw new DatasetError(`${where}: the rendered prompt holds ${spans.length} image spans for ${chat.images.length} image${chat.images.length === 1 ? '' : 's'}; expected one each`);
  }
  return { tokens, imageStarts: starts.map((x) => x[0]!), labels };
}

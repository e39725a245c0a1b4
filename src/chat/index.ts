/** Public surface of the multimodal chat pipeline. */
export { VisionLanguageModel, type ChatResult, type ChatUsage, type LoadOptions, type VlmParts, type VlmStats } from './vlm.js';
export { ChatStream } from './stream.js';
export { ChatError, type ChatErrorCode } from './errors.js';
export { ChatInputError, normalizeChat, type ChatMessage, type NormalizedChat } from './messages.js';
export { TEMPLATE_NAMES, renderTemplate, segmentsToString, type TemplateName } from './templates.js';
export { TEMPLATE_CHOICES, planPrompt, renderPrompt, type PromptPlan, type TemplateChoice } from './prompt.js';
export { bytesLoader, dataUrlLoader, type ImageLoader } from './images.js';
export { TowerProjectorEmbedder, checkTowerProjector, type ImageEmbedder } from './embedder.js';
export { choosePlaceholder, type Placeholder } from './placeholder.js';
export type { ChatOptions } from './options.js';
